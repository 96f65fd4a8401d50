# One network for both jobs (the specification's "future merging"): it reads a draft with some
# positions [MASK] and predicts the original character there, and at every visible position the
# character itself when it is right and [WRONG] when it is wrong. So one forward pass both fills
# and scores. Same architecture and vocabulary as config/train_shakespeare_char_quick.py.
# Its rows are the sampler's states (char_sampler_states): the quick unmasking model fills masked
# windows by sampling, and then a share of each row, from none to all, is put back to [MASK].
# Train the unmasking model first (the provider waits for it):
#   python train.py config/train_shakespeare_char_quick.py
#   python train.py config/train_merged.py
#   python sample.py --out_dir=out-merged    # remdm by its own [WRONG] scores; the seed's flags work too
#   python evaluate.py --out_dir=out-merged --checkpoint_name=ckpt_merged_800.pt
# See docs/model.md and docs/inference_replacement.md.

out_dir = 'out-merged'
eval_interval = 200
eval_iters = 20
log_interval = 25

training_type = 'merged'

# data: sampled drafts with [MASK] left in them, full targets
dataset = 'char_sampler_states'
data_dir = 'data/char_sampler_states/merged-quick'  # its own queue
batch_size = 32
block_size = 128
batches_per_file = 25
fill_ratio_range = (0.1, 1.0)        # the mask levels of the sampler's schedule
fill_iterations = 1
fill_temperature = 1.0               # sample.py's default temperature
left_masked_ratio_range = (0.0, 1.0)  # what it reads mid-generation: from no [MASK] to a blank page
num_workers = 2                      # two provider processes: inference is most of their work

# the unmasking run whose sampler states are the training data
checkpoint_dir = 'out-shakespeare-char-quick'
inference_training_type = 'unmasking'
inference_refresh_seconds = 60.0
fallback_to_random = False           # wait for a real checkpoint

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
