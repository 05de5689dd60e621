"""studio-tiny: the small embedded model, its scene renderer, training and evaluation.

- `vocabulary`: the words the model understands (shown to the user).
- `scenes`: procedural scenes with captions and ground truth.
- `tokenizer`, `models`, `data`, `latents`, `train`, `export`, `card`: building the models.
- `judge`, `evaluate`: measuring them against the renderer's ground truth.
"""
