# A remasking model, Approach B: it reads text with some characters replaced by other characters and
# learns, at every position, the original character where the text is right and [WRONG] where it
# was replaced. Same architecture as config/train_shakespeare_char_quick.py, so the two can be used
# (and later merged) together.
# $ python train.py config/train_remasking_all_positions.py

out_dir = 'out-remasking-all-positions'   # its own out_dir: ckpt.pt (the resume point) is per run
eval_interval = 200
eval_iters = 20
log_interval = 25

training_type = 'remasking'
remasking_loss_type = 'all_positions'

# data: random characters and fragments of other text, never [MASK]
dataset = 'char_random_replacement'
data_dir = 'data/char_random_replacement/remasking'  # shared with the Approach A config (same data)
batch_size = 32
block_size = 128
batches_per_file = 25
dataset_partial_targets = False                    # full targets: remasking derives [WRONG] from x != y
train_corruption_mixture = (0.8, 0.0, 0.2)         # (random, mask, fragment)
# corruption densities from a few typos to mostly garbage, like the drafts a sampler produces
use_all_stages_for_training = True
unmasking_stages = [
    {'type': 'random', 'max_masked_ratio': 0.2},
    {'type': 'random', 'max_masked_ratio': 0.6},
    {'type': 'sticky', 'target_masked_ratio': 0.3, 'p1_probability': 0.1, 'p2_probability': 0.6},
    {'type': 'span', 'spans_count': 3},
]
validation_stages = None     # the validation set uses unmasking_stages

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
