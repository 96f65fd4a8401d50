# A remasking model (Approach B) trained on the unmasking model's real mistakes: positions are
# blanked, the quick unmasking model fills them in (argmax, from the context left), and the remasking
# model learns [WRONG] where that guess differs from the original and the original character
# everywhere else. Model, stages and loss as config/train_remasking_all_positions.py.
# Train the unmasking model first (the provider waits for its checkpoint):
#   python train.py config/train_shakespeare_char_quick.py
#   python train.py config/train_remasking_from_predictions.py
# See docs/inference_replacement.md.

out_dir = 'out-remasking-from-predictions'   # its own out_dir: never the watched run's
eval_interval = 200
eval_iters = 20
log_interval = 25

training_type = 'remasking'
remasking_loss_type = 'all_positions'

# data: the quick unmasking model's predictions (and a little random text), never [MASK]
dataset = 'char_inference_replacement'
data_dir = 'data/char_inference_replacement/remasking-quick'  # its own queue
batch_size = 32
block_size = 128
batches_per_file = 25
dataset_partial_targets = False
train_corruption_mixture = (0.8, 0.1, 0.0, 0.1)  # (prediction, random, mask, fragment)
use_all_stages_for_training = True
unmasking_stages = [
    {'type': 'random', 'max_masked_ratio': 0.2},
    {'type': 'random', 'max_masked_ratio': 0.6},
    {'type': 'sticky', 'target_masked_ratio': 0.3, 'p1_probability': 0.1, 'p2_probability': 0.6},
    {'type': 'span', 'spans_count': 3},
]
validation_stages = None

# the unmasking run whose mistakes are the training data
checkpoint_dir = 'out-shakespeare-char-quick'
inference_training_type = 'unmasking'
inference_refresh_seconds = 60.0             # a better unmasking model makes subtler mistakes: follow it
fallback_to_random = False                   # wait for a real checkpoint: random characters are not its mistakes

# the quick model (config/train_shakespeare_char_quick.py)
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
pos_encoding = 'rotary'

learning_rate = 2e-3
max_iters = 800
lr_decay_iters = 800
min_lr = 2e-4
warmup_iters = 50
beta2 = 0.99
