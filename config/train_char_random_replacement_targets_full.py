# Edit-style model on Tiny Shakespeare: positions picked with the 'complex' stages are replaced by
# random characters (80%) or [MASK] (20%); the target is the original text at every position.
#   python prepare.py config/train_char_random_replacement_targets_full.py
#   python train.py config/train_char_random_replacement_targets_full.py

import os
exec(open(os.path.join(os.path.dirname(__file__), 'baby_gpt_model.py')).read())  # model + optimiser

out_dir = 'out-char-random-replacement'
wandb_run_name = 'char-random-replacement'
training_type = 'unmasking'

# data: the provider reads these too (see docs/data.md)
dataset = 'char_random_replacement'
composition_config = 'complex'  # data/char_random_replacement/config/complex.py (the char_diffusion stages)
train_corruption_mixture = (0.8, 0.2, 0.0)  # (random, mask, fragment)
original_token_probability_multiplier = 1.0  # the random branch draws the original char as often as any other
dataset_partial_targets = False  # full targets: the loss covers every position
