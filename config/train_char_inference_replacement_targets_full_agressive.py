# Self-bootstrapping edit model: picked positions (the heavy 'complex' stages) are filled mostly with
# what the random-replacement run's newest checkpoint predicts there, plus random characters, [MASK]
# and fragments of other text; the target is the original text at every position.
# Train config/train_char_random_replacement_targets_full.py first (or alongside: until its first
# checkpoint lands the prediction branch gets random characters), then
#   python prepare.py config/train_char_inference_replacement_targets_full_agressive.py
#   python train.py config/train_char_inference_replacement_targets_full_agressive.py
# See docs/inference_replacement.md.

import os
exec(open(os.path.join(os.path.dirname(__file__), 'baby_gpt_model.py')).read())  # model + optimiser

out_dir = 'out-char-inference-replacement'
wandb_run_name = 'char-inference-replacement'
training_type = 'unmasking'

# data: the provider reads these too
dataset = 'char_inference_replacement'
composition_config = 'complex'  # data/char_inference_replacement/config/complex.py (the char_diffusion stages)
train_corruption_mixture = (0.35, 0.2, 0.15, 0.3)  # (prediction, random, mask, fragment), train and val
dataset_partial_targets = False  # full targets: the loss covers every position

# the watched run: the out_dir of config/train_char_random_replacement_targets_full.py
checkpoint_dir = 'out-char-random-replacement'
inference_training_type = 'unmasking'  # it saves ckpt_unmasking_<iter>.pt
inference_refresh_seconds = 60.0
inference_device = 'auto'        # the GPU when there is one: inference is most of the provider's work
prediction_temperature = 1.0
prediction_sampling = False      # argmax predictions
fallback_to_random = True        # keep batches flowing before the first checkpoint
