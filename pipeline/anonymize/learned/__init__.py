"""The learned PII detector (issue 20): a spaCy NER trained here, offline, on the project's own generator.

- `generate.py`: the versioned training-data generator (Faker across many locales + this package's own templates).
- `train.py`: `train_pii` (`fraudslm train-pii`, `make pii-model`): continues the bundled spaCy model's NER on the
  generated data with rehearsal, saves a small ner-only pipeline + model card.
- `recognizer.py`: `LearnedPiiRecognizer`, the Presidio recognizer (schemas/recognizers.yaml) reading that
  pipeline's entities from the one spaCy pass the NLP engine makes.
- `metrics.py`: the issue's type-agnostic coverage metric (a gold span is caught when predicted spans cover at least
  90% of its characters) and character precision.
"""
