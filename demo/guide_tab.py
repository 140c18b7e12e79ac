"""Guide tab: a short classroom walkthrough."""

from __future__ import annotations

import gradio as gr

from demo.ui import explain, limits_note

INTRO = "New here? Follow these six exercises, in order; each takes a few minutes."

GUIDE = """
### 1 · Train a tiny model (Train tab)
Keep the defaults — built-in corpus, English, German and French, all pairs, the *tiny* preset — and
press **Start training**. Each training step shows the model a batch of sentence pairs and nudges its
weights to make the reference translation more probable.

* **Watch the loss.** The training loss is the average surprise (cross-entropy) of the model at the
  correct next piece. It falls fast at first, then slowly. The dashed line is the learning rate:
  it warms up, then decays. *Question:* what happens to the loss if you multiply the learning rate by 10?
* **Watch BLEU.** Every few hundred steps the model translates validation sentences in every direction.
  Which directions learn first? Why might German → French lag behind English → German?
* **Cancel** stops after the current step and still keeps a usable model.

### 2 · Translate (Translate tab)
Pick your new model at the top of the page. Type a sentence per line, or click an example.

* Compare **greedy** and **beam search** (beam 4–8). Does the n-best list show real alternatives, or the
  same sentence with tiny changes? With length penalty 1 the score is the mean log-probability per
  piece: closer to 0 is better.
* Try **Translate into every language**: one sentence, all targets at once.
* Swap the languages (⇄) to translate the output back. Is the round trip faithful?

### 3 · Generate (Generate tab)
The decoder is a language model over pieces.

* **Sampling:** draw 10 candidates at temperature 0.5, then 1.5. How does the variety change, and the
  log-probabilities? What do top-k and top-p cut off?
* **Step by step:** move the slider. At which steps is the model sure (one long bar), and where does
  it hesitate? Type your own translation into *Follow this translation* to see how probable the model
  finds each of its pieces.

### 4 · Read the attention (Attention tab)
Translate a short sentence. In the cross-attention map each row is a produced piece and each column a
source piece. Is there a diagonal? Where does it bend (word order differs between languages)? Compare the
heads of the last layer: some follow the alignment, others look at the end of the sentence (`</s>`).

### 5 · Compare BLEU across languages (Evaluate tab)
Evaluate your model on the built-in test split, then compare it with another checkpoint.

* Which directions score best? Is BLEU fair to languages with rich morphology (compare with chrF)?
* Train an **English-centric** model (Train tab, *Directions*): German ↔ French pairs are never seen.
  In the matrix those zero-shot directions are marked *. Can the model translate them at all?
* The signatures under each table say exactly how the scores were computed, so they can be compared
  with published numbers.

### 6 · Look inside multilingual learning (Inside tab)
* **Zero-shot vs pivot:** with your English-centric model, is translating German → French directly
  (zero-shot) better or worse than going through English (pivot)? Do zero-shot outputs come out in the
  right language?
* **Transfer:** the section opens on an experiment measured on Multi30K: English → Czech with only N pairs,
  built three ways: (a) from the N pairs alone, (b) together with all the English ↔ German and English ↔ French
  data from scratch, (c) starting from a model pretrained on English, German and French — which has never seen
  Czech — and fine-tuned on the N pairs. Which method wins at the smallest N? Does the gap shrink as N grows?
  Why does (b) score lowest although it saw the most data? (Look at the validation curves, and count how many
  of its batches were English → Czech at direction temperature 5.) Then press **Run the small version** and
  check whether the same ranking appears in ten minutes on this machine.
* **Fine-tune your own:** in the Train tab, *Start from: a trained model*, pick the shipped model, tick
  English and Spanish on the built-in corpus: the model learns a language it has never seen (a new `<2es>` tag,
  new pieces) without forgetting the others. Try *Replay* at 0 and at 0.2: which keeps German better?
* **Sentence space:** move the layer slider. Do translations of a sentence come closer in higher
  layers? Does retrieval accuracy rise with the layer?
* **Shared vocabulary:** which language needs the most pieces per word? Which two languages share the
  most pieces, and why?
* **Side by side:** compare a tiny model with the shipped one on the same sentence: is the attention of
  the better model more diagonal?
"""


def build() -> None:
    explain(INTRO)
    gr.Markdown(GUIDE, elem_id="guide")
    gr.Markdown(f"**Limits of this server.** {limits_note()}", elem_id="guide-limits")
