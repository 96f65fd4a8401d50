# The README's main job: a small unmasking (masked diffusion) model of Tiny Shakespeare that
# trains on a laptop-class CPU in about 5 minutes and already writes recognisable words.
# $ python train.py config/train_shakespeare_char_quick.py
# $ python sample.py --out_dir=out-shakespeare-char-quick

import os
exec(open(os.path.join(os.path.dirname(__file__), 'quick_model.py')).read())  # model + optimiser

out_dir = 'out-shakespeare-char-quick'
always_save_checkpoint = False

dataset = 'char_diffusion'
data_dir = 'data/char_diffusion/quick'  # its own queue, so other char_diffusion configs cannot clash with it

# every row gets its own masking rate, so the model sees everything from a few holes to a blank page:
# generation starts from a fully masked block and unmasks it step by step. Lightly masked rows carry
# the most signal early on (the neighbours are there to read), so half the rows stay at or below 50%.
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
