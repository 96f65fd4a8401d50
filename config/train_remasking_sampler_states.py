# A remasking model (Approach B) trained on the states the sampler really produces: the quick
# unmasking model masks each window at a level drawn across the remasking schedule's range
# (end_ratio 0.1 .. start_ratio 1.0), fills it by *sampling* at temperature 1 as sample.py does,
# remasks at random and fills again; the remasker learns [WRONG] where a character differs from the
# original and the original character everywhere else. Model and loss as
# config/train_remasking_all_positions.py. Train the unmasking model first (the provider waits for it):
#   python train.py config/train_shakespeare_char_quick.py
#   python train.py config/train_remasking_sampler_states.py
# See docs/inference_replacement.md.

out_dir = 'out-remasking-sampler-states'   # its own out_dir: never the watched run's
eval_interval = 200
eval_iters = 20
log_interval = 25

training_type = 'remasking'
remasking_loss_type = 'all_positions'

# data: the quick unmasking model's sampled drafts, never [MASK]
dataset = 'char_sampler_states'
data_dir = 'data/char_sampler_states/remasking-quick'  # its own queue
batch_size = 32
block_size = 128
batches_per_file = 25
fill_ratio_range = (0.1, 1.0)        # the mask levels of the sampler's schedule
fill_iterations = 2                  # fill, remask at random, fill again: drafts built on drafts
fill_temperature = 1.0               # sample.py's default temperature
left_masked_ratio_range = (0.0, 0.0)  # a remasker never sees [MASK]
num_workers = 2                      # two provider processes: inference is most of their work

# the unmasking run whose sampler states are the training data
checkpoint_dir = 'out-shakespeare-char-quick'
inference_training_type = 'unmasking'
inference_refresh_seconds = 60.0
fallback_to_random = False           # wait for a real checkpoint: random characters are not its mistakes

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
