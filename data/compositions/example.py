# A small stage composition: one stage of each mask shape. Copy it to start your own.
use_all_stages_for_training = True

unmasking_stages = [
    {'type': 'random', 'max_masked_ratio': 0.5},
    {'type': 'sticky', 'target_masked_ratio': 0.4, 'p1_probability': 0.1, 'p2_probability': 0.7},
    {'type': 'span', 'spans_count': 3},
]

validation_stages = None  # the validation set uses unmasking_stages
