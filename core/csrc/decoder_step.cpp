// One incremental decoder step of core.model.Transformer, compiled: the speed path of
// core/compiled.py. It runs exactly the ATen operations that the Python step runs
// (`core.decoding._next_log_probs`: `Transformer.decode` with `incremental=True`, then `logits`
// and `log_softmax`), in the same order, so the log-probabilities are bitwise the same;
// tests/test_compiled.py checks it. Read model.py for the maths; this file only removes Python
// from between the operations.
//
// Why: a step of a small model is some 300 operations, most of them tiny, and in eager PyTorch
// each costs Python work before its kernel starts. Here they follow each other in C++, with the
// GIL released so that several batches decode side by side (core/parallel.py).

#include <torch/extension.h>

#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>
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

// fast.append: the past keys or values (their rows picked by `order`), then the new position.
at::Tensor append(const at::Tensor& past, const at::Tensor& now, const std::optional<at::Tensor>& order) {
  const int64_t rows = order ? order->size(0) : past.size(0);
  const int64_t length = past.size(2);
  auto grown = past.new_empty({rows, past.size(1), length + now.size(2), past.size(3)});
  auto earlier = grown.narrow(2, 0, length);
  if (order) {
    at::index_select_out(earlier, past, 0, *order);
  } else {
    earlier.copy_(past);
  }
  grown.narrow(2, length, now.size(2)).copy_(now);
  return grown;
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
    auto qkv = packed_linear(normed, *p.qkv_weight, *p.qkv_bias).chunk(3, -1);
    auto query = split_heads(qkv[0], heads);
    auto keys = split_heads(qkv[1], heads), values = split_heads(qkv[2], heads);
    if (!past.empty()) {
      keys = append(past[2 * l], keys, orders[l]);
      values = append(past[2 * l + 1], values, orders[l]);
    }
    out.push_back(keys);
    out.push_back(values);
    auto attended = merge_heads(attention(query, keys, values, std::nullopt));
    x = at::add(x, packed_linear(attended, *p.self_output_weight, *p.self_output_bias));
    // Cross-attention; a sentence's beams attend to its source together (fast.group_beams).
    normed = at::layer_norm(x, {d_model}, *p.cross_norm_weight, *p.cross_norm_bias, eps);
    query = split_heads(packed_linear(normed, *p.cross_query_weight, *p.cross_query_bias), heads);
    if (beams > 1) {
      query = query.reshape({rows / beams, beams, heads, query.size(3)}).transpose(1, 2);
    }
    attended = merge_heads(attention(query, cross[2 * l], cross[2 * l + 1], source_mask));
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

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("decoder_step", &decoder_step, py::call_guard<py::gil_scoped_release>(),
        "One incremental decoder step: log-probabilities, then each layer's grown keys and values.");
}
