# The autoregressive twin of config/train_text8_quick.py: the same model and optimiser, causal, trained
# on next-character prediction of text8. evaluate.py --sections=test scores both on the test split.
# $ python train.py config/train_text8_quick_autoregressive.py

out_dir = 'out-text8-quick-autoregressive'
eval_interval = 200
eval_iters = 20
log_interval = 25

training_type = 'autoregressive'
attention_type = 'causal'

# data: the clean text, rebuilt from the cheapest provider's queue (as config/train_autoregressive.py)
dataset = 'char_diffusion'
corpus = 'text8'
data_dir = 'data/char_diffusion/text8-quick-autoregressive'
batch_size = 32
block_size = 128
batches_per_file = 25

# the quick model (config/train_text8_quick.py)
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
