// One incremental decoder step of core.model.Transformer, compiled: the speed path of
// core/compiled.py. It computes what the Python step computes (`core.decoding._next_log_probs`:
// `Transformer.decode` with `incremental=True`, then `logits` and `log_softmax`), mostly with the
// same ATen operations in the same order. Read model.py for the maths; this file only removes
// Python from between the operations, and fuses one of them.
//
// Why: a step of a small model is some 300 operations, most of them tiny, and in eager PyTorch
// each costs Python work before its kernel starts. Here they follow each other in C++, with the
// GIL released so that several batches decode side by side (core/parallel.py).
//
// The one fused operation is the self-attention of the new position (`attend_new_position`): its
// cache grows and it attends in one pass over the cache, not in four (copy, QK^T, softmax, ·V).
// Its sums run in their own order, so the log-probabilities equal the Python step's to float
// rounding rather than bit for bit; the caches are still bitwise the same
// (tests/test_compiled.py).
//
// Below it, beam search's choice of candidates after each step (fast.top_candidates), for the same
// reason: in Python it is a dozen small operations per step.

#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <string_view>
#include <vector>

namespace {

using LinearPointwise = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, std::string_view,
                                   c10::List<std::optional<at::Scalar>>, std::optional<std::string_view>);

// fast.dense / fast.linear / fast.linear_relu: oneDNN's matmul on a weight packed once, with an
// optional post-op ("relu").
at::Tensor packed_linear(const at::Tensor& x, const at::Tensor& packed_weight, const std::optional<at::Tensor>& bias,
                         std::string_view post_op = "none") {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "").typed<LinearPointwise>();
  return op.call(x, packed_weight, bias, post_op, c10::List<std::optional<at::Scalar>>(), std::nullopt);
}

// model.attention: softmax(QKᵀ/√d_k)·V, the mask (True where a query may look) as -inf scores.
at::Tensor attention(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                     const std::optional<at::Tensor>& mask) {
  auto scores = at::div(at::matmul(query, key.transpose(-2, -1)), std::sqrt(static_cast<double>(query.size(-1))));
  if (mask) scores = at::where(*mask, scores, -INFINITY);
  return at::matmul(scores.softmax(-1), value);
}

// The loops below are built for the machine's vector width: on x86-64 Linux one copy per width,
// chosen when the library loads; elsewhere the compiler's default.
#if defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__) && defined(__GNUC__)
#define FOR_EACH_VECTOR_WIDTH __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FOR_EACH_VECTOR_WIDTH
#endif

// One (row, head) of `attend_new_position`: its grown keys and values `k`, `v` [length, d_head]
// (the past already copied in), its query `q`, and where its attended value goes.
FOR_EACH_VECTOR_WIDTH
void attend(const float* q, const float* k, const float* v, int64_t length, int64_t d_head, float scale, float* weights,
            float* out) {
  float largest = -INFINITY;
  for (int64_t t = 0; t < length; ++t) {
    // 16 running sums, which the compiler turns into vector lanes (one sum would be a chain).
    float partial[16] = {};
    const float* key = k + t * d_head;
    int64_t d = 0;
    for (; d + 16 <= d_head; d += 16)
      for (int j = 0; j < 16; ++j) partial[j] += q[d + j] * key[d + j];
    float dot = 0;
    for (int j = 0; j < 16; ++j) dot += partial[j];
    for (; d < d_head; ++d) dot += q[d] * key[d];
    weights[t] = dot * scale;
    largest = std::max(largest, weights[t]);
  }
  float total = 0;
  for (int64_t t = 0; t < length; ++t) total += weights[t] = std::exp(weights[t] - largest);
  for (int64_t d = 0; d < d_head; ++d) out[d] = 0;
  for (int64_t t = 0; t < length; ++t) {
    const float w = weights[t] / total;
    for (int64_t d = 0; d < d_head; ++d) out[d] += w * v[t * d_head + d];
  }
}

// Masked self-attention of one new position per row, with the cache grown in the same pass: each
// (row, head) copies its past keys/values (the row `order` picks) and this step's into the grown
// cache, and attends over them while they are in the processor's cache. `qkv` [rows, 1, 3·d_model]
// is the joined projection. Returns the attended values [rows, 1, d_model], then the grown keys
// and values [rows, heads, length, d_head].
std::vector<at::Tensor> attend_new_position(const at::Tensor& qkv, const at::Tensor* past_keys, const at::Tensor* past_values,
                                            const std::optional<at::Tensor>& order, int64_t heads) {
  const int64_t rows = qkv.size(0), d_model = qkv.size(2) / 3, d_head = d_model / heads;
  const int64_t past = past_keys ? past_keys->size(2) : 0, length = past + 1;
  auto keys = at::empty({rows, heads, length, d_head}, qkv.options());
  auto values = at::empty({rows, heads, length, d_head}, qkv.options());
  auto attended = at::empty({rows, 1, d_model}, qkv.options());
  const float* joined = qkv.data_ptr<float>();
  const auto past_k = past ? past_keys->contiguous() : at::Tensor(), past_v = past ? past_values->contiguous() : at::Tensor();
  const float* old_keys = past ? past_k.data_ptr<float>() : nullptr;
  const float* old_values = past ? past_v.data_ptr<float>() : nullptr;
  const auto picked = order ? order->to(at::kLong).contiguous() : at::Tensor();
  const int64_t* from = order ? picked.data_ptr<int64_t>() : nullptr;
  float *keys_p = keys.data_ptr<float>(), *values_p = values.data_ptr<float>(), *out_p = attended.data_ptr<float>();
  const float scale = 1.0f / std::sqrt(static_cast<float>(d_head));
  at::parallel_for(0, rows * heads, 16, [&](int64_t first, int64_t end) {
    std::vector<float> weights(length);
    for (int64_t i = first; i < end; ++i) {
      const int64_t r = i / heads, h = i % heads, source = from ? from[r] : r;
      float* k = keys_p + i * length * d_head;
      float* v = values_p + i * length * d_head;
      const int64_t block = past * d_head;
      if (past) {
        std::memcpy(k, old_keys + (source * heads + h) * block, block * sizeof(float));
        std::memcpy(v, old_values + (source * heads + h) * block, block * sizeof(float));
      }
      const float* now = joined + r * 3 * d_model + h * d_head;
      std::memcpy(k + block, now + d_model, d_head * sizeof(float));
      std::memcpy(v + block, now + 2 * d_model, d_head * sizeof(float));
      attend(now, k, v, length, d_head, scale, weights.data(), out_p + r * d_model + h * d_head);
    }
  });
  return {attended, keys, values};
}

// MultiHeadAttention.split_heads / merge_heads
at::Tensor split_heads(const at::Tensor& x, int64_t heads) {
  return x.view({x.size(0), x.size(1), heads, x.size(2) / heads}).transpose(1, 2);
}
at::Tensor merge_heads(const at::Tensor& x) {
  return x.transpose(1, 2).reshape({x.size(0), x.size(2), x.size(1) * x.size(3)});
}

// The tensors of one DecoderLayer, in the order core/compiled.py lists them.
struct Layer {
  const at::Tensor *self_norm_weight, *self_norm_bias, *qkv_weight, *qkv_bias, *self_output_weight, *self_output_bias;
  const at::Tensor *cross_norm_weight, *cross_norm_bias, *cross_query_weight, *cross_query_bias, *cross_output_weight,
      *cross_output_bias;
  const at::Tensor *feed_forward_norm_weight, *feed_forward_norm_bias, *linear1_weight, *linear1_bias, *linear2_weight,
      *linear2_bias;
};
constexpr int64_t kTensorsPerLayer = 18;

// The `count` best of a stream of (value, id) pairs, kept sorted: larger values first, and of equal
// values the smaller id first, so the answer does not depend on the order the pairs come in.
struct Best {
  int64_t count;
  float* values;
  int64_t* ids;
  int64_t filled = 0;

  static bool before(float value, int64_t id, float other_value, int64_t other_id) {
    return value > other_value || (value == other_value && id < other_id);
  }
  void offer(float value, int64_t id) {
    if (filled == count && !before(value, id, values[count - 1], ids[count - 1])) return;
    int64_t at = filled < count ? filled++ : count - 1;
    for (; at > 0 && before(value, id, values[at - 1], ids[at - 1]); --at) {  // insertion: count is small
      values[at] = values[at - 1];
      ids[at] = ids[at - 1];
    }
    values[at] = value;
    ids[at] = id;
  }
};

}  // namespace

// Returns the next-piece log-probabilities [rows, vocab], then every layer's grown self-attention
// keys and values (the cache for the next step). `past` is empty at the first step; `orders[l]`
// are the rows of layer l's past that the rows continue (beam search), or None.
std::vector<at::Tensor> decoder_step(const at::Tensor& ids, int64_t offset, const at::Tensor& embedding,
                                     const at::Tensor& positions, const std::vector<at::Tensor>& tensors,
                                     const std::vector<at::Tensor>& past, const std::vector<std::optional<at::Tensor>>& orders,
                                     const std::vector<at::Tensor>& cross, const at::Tensor& source_mask, int64_t beams,
                                     int64_t heads, double eps) {
  const int64_t layers = static_cast<int64_t>(cross.size()) / 2;
  const int64_t d_model = embedding.size(1);
  // Transformer.embed: embedding·√d_model + position (dropout is off when decoding).
  auto x = at::add(at::mul(at::embedding(embedding, ids), std::sqrt(static_cast<double>(d_model))),
                   positions.narrow(0, offset, ids.size(1)));
  const int64_t rows = x.size(0);
  std::vector<at::Tensor> out(1);
  out.reserve(1 + 2 * layers);
  for (int64_t l = 0; l < layers; ++l) {
    const at::Tensor* t = &tensors[kTensorsPerLayer * l];
    const Layer p{&t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6], &t[7], &t[8],
                  &t[9], &t[10], &t[11], &t[12], &t[13], &t[14], &t[15], &t[16], &t[17]};
    // Masked self-attention: this step's query, keys and values from one joined projection; the
    // keys and values join the cache, and the new query may see all of them.
    auto normed = at::layer_norm(x, {d_model}, *p.self_norm_weight, *p.self_norm_bias, eps);
    auto qkv = packed_linear(normed, *p.qkv_weight, *p.qkv_bias);
    auto self = attend_new_position(qkv, past.empty() ? nullptr : &past[2 * l], past.empty() ? nullptr : &past[2 * l + 1],
                                    orders[l], heads);
    out.push_back(self[1]);
    out.push_back(self[2]);
    x = at::add(x, packed_linear(self[0], *p.self_output_weight, *p.self_output_bias));
    // Cross-attention; a sentence's beams attend to its source together (fast.group_beams).
    normed = at::layer_norm(x, {d_model}, *p.cross_norm_weight, *p.cross_norm_bias, eps);
    auto query = split_heads(packed_linear(normed, *p.cross_query_weight, *p.cross_query_bias), heads);
    if (beams > 1) {
      query = query.reshape({rows / beams, beams, heads, query.size(3)}).transpose(1, 2);
    }
    auto attended = merge_heads(attention(query, cross[2 * l], cross[2 * l + 1], source_mask));
    x = at::add(x, packed_linear(attended, *p.cross_output_weight, *p.cross_output_bias).view(x.sizes()));
    // Feed-forward network, its ReLU applied by the first matmul.
    normed = at::layer_norm(x, {d_model}, *p.feed_forward_norm_weight, *p.feed_forward_norm_bias, eps);
    auto hidden = packed_linear(normed, *p.linear1_weight, *p.linear1_bias, "relu");
    x = at::add(x, packed_linear(hidden, *p.linear2_weight, *p.linear2_bias));
  }
  // The decoder's final LayerNorm, the output projection (tied to the embedding) and log-softmax.
  const at::Tensor* last = &tensors[kTensorsPerLayer * layers];
  auto states = at::layer_norm(x, {d_model}, last[0], last[1], eps).select(1, -1);
  out[0] = packed_linear(states, last[2], std::nullopt).log_softmax(-1);
  return out;
}

// fast.top_candidates, without its dozen small operations: beam search's k best continuations
// of each group of `scores` [groups, beams] + `log_probs` [groups·beams, vocab], as values and
// indices into beams × vocab. As there, each of the k best lies in one of the k blocks of `size`
// pieces whose maxima plus their beam's score are best; only those blocks are read in full. The sums
// are the same float additions as torch's, so the values are bitwise its; equal values come
// smaller index first. core/compiled.py calls it only where k ≤ beams · vocab / size.
std::vector<at::Tensor> top_candidates(const at::Tensor& scores, const at::Tensor& log_probs, int64_t k, int64_t size) {
  const int64_t groups = scores.size(0), beams = scores.size(1), vocab = log_probs.size(1), per_row = vocab / size;
  const auto path = scores.contiguous();
  const auto next = log_probs.contiguous();
  const auto block_maxima = at::amax(next.view({groups * beams, per_row, size}), -1);
  auto values = at::empty({groups, k}, scores.options());
  auto indices = at::empty({groups, k}, scores.options().dtype(at::kLong));
  const float *path_p = path.data_ptr<float>(), *next_p = next.data_ptr<float>(), *maxima_p = block_maxima.data_ptr<float>();
  float* values_p = values.data_ptr<float>();
  int64_t* indices_p = indices.data_ptr<int64_t>();
  at::parallel_for(0, groups, 16, [&](int64_t first, int64_t end) {
    std::vector<float> block_values(k);
    std::vector<int64_t> blocks(k);
    for (int64_t g = first; g < end; ++g) {
      Best best_blocks{k, block_values.data(), blocks.data()};  // ids: beam · per_row + block
      for (int64_t b = 0; b < beams; ++b) {
        const float score = path_p[g * beams + b];
        const float* maxima = maxima_p + (g * beams + b) * per_row;
        for (int64_t j = 0; j < per_row; ++j) best_blocks.offer(score + maxima[j], b * per_row + j);
      }
      Best best{k, values_p + g * k, indices_p + g * k};  // ids: beam · vocab + piece
      for (int64_t c = 0; c < best_blocks.filled; ++c) {
        const int64_t b = blocks[c] / per_row, start = blocks[c] % per_row * size;
        const float score = path_p[g * beams + b];
        const float* block = next_p + (g * beams + b) * vocab + start;
        for (int64_t t = 0; t < size; ++t) best.offer(score + block[t], b * vocab + start + t);
      }
    }
  });
  return {values, indices};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("decoder_step", &decoder_step, py::call_guard<py::gil_scoped_release>(),
        "One incremental decoder step: log-probabilities, then each layer's grown keys and values.");
  m.def("top_candidates", &top_candidates, py::call_guard<py::gil_scoped_release>(),
        "Beam search's k best continuations per group: values and indices into beams x vocab.");
}
