# The quick configs' stage mix (config/train_shakespeare_char_quick.py, train_shakespeare_char_words.py,
# train_text8_quick.py): every row gets its own masking rate, so the model sees everything from a few
# holes to a blank page: generation starts from a fully masked block and unmasks it step by step.
# Lightly masked rows carry the most signal early on (the neighbours are there to read), so half the
# rows stay at or below 50%. It measured best at the quick budget (docs/results.md, section 2).
use_all_stages_for_training = True

unmasking_stages = [
    {'type': 'random', 'max_masked_ratio': 1.0},
    {'type': 'random', 'max_masked_ratio': 0.5},
    {'type': 'random', 'max_masked_ratio': 0.25},
    {'type': 'sticky', 'target_masked_ratio': 0.5, 'p1_probability': 0.1, 'p2_probability': 0.7},
]

validation_stages = [
    {'type': 'random', 'max_masked_ratio': 0.3},
    {'type': 'random', 'max_masked_ratio': 1.0},
    {'type': 'sticky', 'target_masked_ratio': 0.5, 'p1_probability': 0.1, 'p2_probability': 0.7},
]
