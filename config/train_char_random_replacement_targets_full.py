# Edit-style model on Tiny Shakespeare: positions picked with the 'complex' stages are replaced by
# random characters (80%) or [MASK] (20%); the target is the original text at every position.
# Model and optimiser as config/train_char_diffusion.py (the inference-replacement provider loads
# this run's checkpoints).
#   python prepare.py config/train_char_random_replacement_targets_full.py
#   python train.py config/train_char_random_replacement_targets_full.py

out_dir = 'out-char-random-replacement'
eval_interval = 250
eval_iters = 200
log_interval = 10
wandb_run_name = 'char-random-replacement'
training_type = 'unmasking'

# data: the provider reads these too (see docs/data.md)
dataset = 'char_random_replacement'
composition_config = 'complex'  # data/compositions/complex.py
train_corruption_mixture = (0.8, 0.2, 0.0)  # (random, mask, fragment)
original_token_probability_multiplier = 1.0  # the random branch draws the original char as often as any other
dataset_partial_targets = False  # full targets: the loss covers every position
batch_size = 64
block_size = 256
batches_per_file = 100
max_backlog_files = 8

n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2
attention_type = 'bidirectional'
pos_encoding = 'rotary'

learning_rate = 1e-3
max_iters = 5000
lr_decay_iters = 5000
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100
