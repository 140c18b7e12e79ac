"""The special ids of the shared vocabulary.

One SentencePiece model serves every language (`core/tokenizer.py`), and it is trained with these
four ids at the front, so every part that builds or reads token ids (tokenizer, batching, the
model's padding, search, export) agrees on them. Constants only: this module imports nothing, so
the data layer can use the ids without depending on the model.
"""

PAD_ID = 0  # padding: never attended to, never a training target
UNK_ID = 1  # a piece the vocabulary lacks
BOS_ID = 2  # <s>: starts every target; the decoder's first input
EOS_ID = 3  # </s>: ends every source and every target
