# The autoregressive twin of config/train_text8.py: the same 12-layer, 768-wide model and the same
# optimiser, causal, trained on next-character prediction: the row to set beside the papers'
# autoregressive text8 baseline (1.23 bits/char; see docs/results.md). Not run here: no GPU was lent.
# $ python train.py config/train_text8_autoregressive.py

out_dir = 'out-text8-autoregressive'
eval_interval = 5000
eval_iters = 100
log_interval = 100

training_type = 'autoregressive'
attention_type = 'causal'

# data: the clean text, rebuilt from the cheapest provider's queue (as config/train_autoregressive.py)
dataset = 'char_diffusion'
corpus = 'text8'
data_dir = 'data/char_diffusion/text8-autoregressive'
batch_size = 64
gradient_accumulation_steps = 8
block_size = 256
batches_per_file = 100

# the model and optimiser of config/train_text8.py
n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.0
pos_encoding = 'rotary'

learning_rate = 3e-4
max_iters = 1_000_000
lr_decay_iters = 1_000_000
min_lr = 0.0
warmup_iters = 2000
weight_decay = 0.0
beta1 = 0.9
beta2 = 0.999
grad_clip = 0.0
