# Unmasking (masked diffusion) model on Tiny Shakespeare characters, at nanoGPT's "baby GPT" size
# (6 layers, 6 heads, 384 wide, 256 characters of context). The other nanoGPT-scale configs use the
# same model and optimiser settings; tests/test_configs.py keeps them equal.
# Data: the char_diffusion provider with the 'complex' stage curriculum, light to very heavy masking.
#   python prepare.py config/train_char_diffusion.py     (or let train.py start the producer)
#   python train.py config/train_char_diffusion.py

out_dir = 'out-char-diffusion'
eval_interval = 250
eval_iters = 200             # also the size of the producer's validation set
log_interval = 10
wandb_run_name = 'char-diffusion'
training_type = 'unmasking'

# data: the provider reads these too (see docs/data.md)
dataset = 'char_diffusion'
composition_config = 'complex'  # data/compositions/complex.py: stage lists, use_all_stages_for_training
batch_size = 64
block_size = 256
batches_per_file = 100
max_backlog_files = 8

n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2
attention_type = 'bidirectional'
pos_encoding = 'rotary'      # a bidirectional model with learned positions can sit at unigram loss for long

learning_rate = 1e-3
max_iters = 5000
lr_decay_iters = 5000
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100
