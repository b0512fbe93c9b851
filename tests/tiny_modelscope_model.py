"""Builds a tiny, real ModelScope LSTM-CRF token-classification model on disk (no download).

The weights are set by hand so that the model tags a small lexicon of address characters with
BIES labels (the LSTM's forget gate is shut, so each position sees only its own character):
`modelscope.pipeline("token-classification", model=dir)` then runs for real (configuration.json,
registry, tokenizer with offsets, LSTM + CRF forward, BIES decoding) and gives known spans.
ModelScope's own NLP backbones (BERT/StructBERT) do not load under transformers 5, which this
environment has; the LSTM-CRF model is plain torch. The directory name must contain "lstm", as
ModelScope's preprocessor decides on that whether to add [CLS]/[SEP].
"""

from __future__ import annotations

import json
from pathlib import Path

LEXICON = {"浙": "B-prov", "江": "I-prov", "省": "E-prov", "杭": "B-city", "州": "I-city", "市": "E-city",
           "西": "B-district", "湖": "I-district", "区": "E-district", "文": "B-road", "三": "I-road", "路": "E-road"}


def build_tiny_address_model(model_dir: Path) -> Path:
    import torch
    from modelscope.models.nlp.lstm import LSTMForTokenClassificationWithCRF

    model_dir.mkdir(parents=True, exist_ok=True)
    labels = ["O"] + sorted(set(LEXICON.values()))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(LEXICON)
    n = len(labels)
    (model_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (model_dir / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer",
                                                                 "do_lower_case": False}))
    model_cfg = {"type": "lstm-crf", "model_type": "lstm", "head_type": "lstm-crf", "vocab_size": len(vocab),
                 "embed_width": n, "lstm_hidden_size": n, "label2id": {label: i for i, label in enumerate(labels)}}
    configuration = {"framework": "pytorch", "task": "token-classification", "model": model_cfg,
                     "pipeline": {"type": "token-classification"},
                     "preprocessor": {"type": "token-cls-tokenizer", "padding": "max_length", "max_length": 32}}
    (model_dir / "configuration.json").write_text(json.dumps(configuration, ensure_ascii=False), encoding="utf-8")
    model = LSTMForTokenClassificationWithCRF(str(model_dir), **{k: v for k, v in model_cfg.items() if k != "type"})
    index = {label: i for i, label in enumerate(labels)}
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        rows = torch.arange(len(vocab))
        cols = torch.tensor([index[LEXICON.get(token, "O")] for token in vocab])
        model.encoder.embedding.embedding.weight[rows, cols] = 1.0  # each character -> its label's one-hot
        for suffix in ("", "_reverse"):
            getattr(model.encoder.lstm, "weight_ih_l0" + suffix)[2 * n:3 * n] = 3.0 * torch.eye(n)
            bias = getattr(model.encoder.lstm, "bias_ih_l0" + suffix)
            bias[0:n] = 10.0  # input gate open
            bias[n:2 * n] = -10.0  # forget gate shut
            bias[3 * n:4 * n] = 10.0  # output gate open
        model.head.ffn.weight.copy_(5.0 * torch.cat([torch.eye(n), torch.eye(n)], dim=1))
    torch.save(model.state_dict(), model_dir / "pytorch_model.bin")
    return model_dir
