# A remasking model (Approach B) trained on the unmasking model's real mistakes: positions are
# blanked, the quick unmasking model fills them in (argmax, from the context left), and the remasking
# model learns [WRONG] where that guess differs from the original and the original character
# everywhere else. Everything else (model, stages, loss) as config/train_remasking_all_positions.py.
# Train the unmasking model first (the provider waits for its checkpoint):
#   python train.py config/train_shakespeare_char_quick.py
#   python train.py config/train_remasking_from_predictions.py
# See docs/inference_replacement.md.

import os
exec(open(os.path.join(os.path.dirname(__file__), 'train_remasking_all_positions.py')).read())

out_dir = 'out-remasking-from-predictions'   # its own out_dir: never the watched run's

dataset = 'char_inference_replacement'
data_dir = 'data/char_inference_replacement/remasking-quick'  # its own queue
train_corruption_mixture = (0.8, 0.1, 0.0, 0.1)  # (prediction, random, mask, fragment): never [MASK]

# the unmasking run whose mistakes are the training data
checkpoint_dir = 'out-shakespeare-char-quick'
inference_training_type = 'unmasking'
inference_refresh_seconds = 60.0             # a better unmasking model makes subtler mistakes: follow it
fallback_to_random = False                   # wait for a real checkpoint: random characters are not its mistakes
