"""fraudslm's mean-pooling BERT classifier, as Hugging Face "remote code".

This file is copied into every saved fraudslm model folder (merged, fp32, pruned, distilled variants) and named in
its `config.json` `auto_map`, so that

    AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)

builds this class and gives the same scores as `fraudslm predict`. The config's `model_type` is `fraudslm_bert`
(not `bert`): without `trust_remote_code=True` transformers refuses to load the folder instead of silently building
a plain [CLS]-pooler BertForSequenceClassification whose scores differ (issue 21). It imports only torch and
transformers (no fraudslm code), so the folder works on its own.
"""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

MODEL_TYPE = "fraudslm_bert"


class FraudslmBertConfig(BertConfig):
    model_type = MODEL_TYPE


class MeanPoolBertForSequenceClassification(BertForSequenceClassification):
    """BertForSequenceClassification whose head reads the attention-masked mean of the last hidden states instead
    of the [CLS] pooler (how sentence-transformers models such as all-MiniLM-L6-v2 were trained). Same weights and
    file layout as BERT (the unused pooler stays)."""

    config_class = FraudslmBertConfig

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                      token_type_ids=token_type_ids).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)
