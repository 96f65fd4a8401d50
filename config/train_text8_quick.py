# The quick model of config/train_shakespeare_char_quick.py on text8, the field's character-level
# benchmark (27 symbols: a-z and space): a masked diffusion model that trains on a CPU in minutes.
# corpus = 'text8' downloads text8.zip when data/text8/text8 is missing and splits it the standard way
# (90M / 5M / 5M characters); evaluate.py --sections=test reports test bits/char as the papers do.
# $ python train.py config/train_text8_quick.py
# $ python train.py config/train_text8_quick_autoregressive.py
# $ python evaluate.py --out_dir=out-text8-quick --reference_out_dir=out-text8-quick-autoregressive --sections=test
# tests/test_configs.py keeps the autoregressive twin's model and optimiser equal to this one.

out_dir = 'out-text8-quick'
eval_interval = 200
eval_iters = 20
log_interval = 25
always_save_checkpoint = False

# data: the provider reads these too (see docs/data.md)
dataset = 'char_diffusion'
corpus = 'text8'
data_dir = 'data/char_diffusion/text8-quick'  # its own queue: text8 never mixes with another corpus's files
batch_size = 32
block_size = 128
batches_per_file = 25
composition_config = 'quick'  # data/compositions/quick.py: the quick config's four-stage mix, best at this budget

# the quick model: 4 layers, 4 heads, 128 wide, 128 characters of context
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
