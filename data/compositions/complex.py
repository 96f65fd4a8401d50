# A curriculum from light to very heavy masking, mixing the three mask shapes.
# With use_all_stages_for_training every batch holds rows of every stage, so the model sees
# nearly clean text and nearly blank text side by side, as iterative unmasking does.
#   random: each position with a probability drawn per row up to max_masked_ratio
#   sticky: about target_masked_ratio of the row; a position next to a masked one is picked with
#           p2_probability, elsewhere with p1_probability (high p2: long masked runs)
#   span:   spans_count contiguous masked spans per row
use_all_stages_for_training = True

unmasking_stages = [
    {'type': 'random', 'max_masked_ratio': 0.1},                                              # light
    {'type': 'random', 'max_masked_ratio': 0.3},
    {'type': 'sticky', 'target_masked_ratio': 0.3, 'p1_probability': 0.1, 'p2_probability': 0.6},
    {'type': 'span', 'spans_count': 2},
    {'type': 'random', 'max_masked_ratio': 0.6},
    {'type': 'sticky', 'target_masked_ratio': 0.6, 'p1_probability': 0.2, 'p2_probability': 0.8},
    {'type': 'span', 'spans_count': 6},
    {'type': 'random', 'max_masked_ratio': 0.9},
    {'type': 'sticky', 'target_masked_ratio': 0.9, 'p1_probability': 0.5, 'p2_probability': 0.9},  # very heavy
]

# fewer, evenly spread stages: one validation loss per density
validation_stages = [
    {'type': 'random', 'max_masked_ratio': 0.2},
    {'type': 'sticky', 'target_masked_ratio': 0.5, 'p1_probability': 0.15, 'p2_probability': 0.7},
    {'type': 'span', 'spans_count': 4},
    {'type': 'random', 'max_masked_ratio': 0.9},
]
