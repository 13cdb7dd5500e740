"""A small BERT-style document classifier (``transformers``' BertForSequenceClassification from a config).

:class:`TransformerClassifier` wraps the Hugging Face model so that the plugin's tools treat it
like its other classifiers: ``model(input_ids, attention_mask)`` returns the logits tensor,
``max_length`` is the number of tokens it reads, ``token_embedding`` names the embedding of the
token ids (beside the position and segment embeddings). ``sx.explain(model, Documents(...))``
passes it ``{"input_ids", "attention_mask"}`` (the mask from the documents' padding) and explains
the token ids; the attention mask is a constant of the model. Without a mask the model masks
the padding id itself, so ``model(ids)`` (used by prediction, word deletion and the gradient
methods) computes the same function: a deleted word (id replaced by padding) is masked out.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sciexplain.errors import MissingDependencyError

__all__ = ["TransformerClassifier", "DEFAULT_TRANSFORMER_PRESET"]

#: CP-LRP (Ali et al. 2022: the attention weights held constant, relevance through the values; AttnLRP's
#: rules for LayerNorm and GELU). Chosen over AttnLRP ("attnlrp") by the conservation benchmark
#: (benchmarks/bench_conservation.py): both rank words alike, and CP-LRP leaves a median -6.7% of f(x)
#: absorbed against 59% on the 20 Newsgroups posts (neither keeps every post under 50%)
DEFAULT_TRANSFORMER_PRESET = "cp-lrp"


def _transformers():
    try:
        import transformers
    except ImportError:  # pragma: no cover - installed with the plugin's [transformer] extra
        raise MissingDependencyError("the transformer classifier needs the 'transformers' package: pip install "
                                     "'sciexplain-text[transformer]'") from None
    return transformers


class TransformerClassifier(nn.Module):
    """A BERT encoder (built from a ``BertConfig``, nothing downloaded) reading ``[CLS]`` for the class.

    Parameters
    ----------
    vocab_size : int
        Entries of the subword vocabulary (id 0 = padding, whose embedding row stays zero).
    n_classes : int
    hidden : int
        Width of the token vectors.
    layers : int
        Encoder layers.
    heads : int
        Attention heads per layer (``hidden`` must be divisible by it).
    intermediate : int
        Width of the feed-forward block.
    max_length : int
        Tokens the model reads, ``[CLS]`` and ``[SEP]`` included (documents are padded or cut to it).
    dropout : float
        Dropout during training (hidden and attention).
    attn_implementation : {"eager", "sdpa"}
        ``"eager"``: matmul + softmax; ``"sdpa"``: ``F.scaled_dot_product_attention``. Both are
        explained alike.
    """

    takes_attention_mask = True
    pad_id = 0

    def __init__(self, vocab_size: int, n_classes: int, hidden: int = 64, layers: int = 2, heads: int = 2,
                 intermediate: int = 128, max_length: int = 256, dropout: float = 0.1,
                 attn_implementation: str = "eager") -> None:
        super().__init__()
        tf = _transformers()
        self.max_length = int(max_length)
        self._settings = {"vocab_size": int(vocab_size), "n_classes": int(n_classes), "hidden": int(hidden),
                          "layers": int(layers), "heads": int(heads), "intermediate": int(intermediate),
                          "max_length": int(max_length), "dropout": float(dropout),
                          "attn_implementation": str(attn_implementation)}
        cfg = tf.BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                            num_attention_heads=heads, intermediate_size=intermediate,
                            max_position_embeddings=max_length, type_vocab_size=1, num_labels=n_classes,
                            hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                            pad_token_id=self.pad_id, attn_implementation=attn_implementation)
        self.bert = tf.BertForSequenceClassification(cfg)

    @property
    def token_embedding(self) -> nn.Embedding:
        """The embedding of the token ids (the position and segment embeddings are constants)."""
        return self.bert.bert.embeddings.word_embeddings

    def config(self) -> dict[str, Any]:
        return dict(self._settings)

    def attention_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """1 for tokens, 0 for padding (id 0)."""
        return (input_ids != self.pad_id).long()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(document, class)`` of token ids ``(document, token)``."""
        if attention_mask is None:
            attention_mask = self.attention_mask(input_ids)
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).logits
