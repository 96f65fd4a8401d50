# Unmasking (masked diffusion) model on Tiny Shakespeare characters.
# Data: the char_diffusion provider with the 'complex' stage curriculum, light to very heavy masking.
#   python prepare.py config/train_char_diffusion.py     (or let train.py start the producer)
#   python train.py config/train_char_diffusion.py

out_dir = 'out-char-diffusion'
wandb_run_name = 'char-diffusion'
training_type = 'unmasking'

# data: the provider reads these too (see docs/data.md)
dataset = 'char_diffusion'
composition_config = 'complex'  # data/char_diffusion/config/complex.py: stage lists, use_all_stages_for_training
batch_size = 64
block_size = 256
batches_per_file = 100
max_backlog_files = 8

# a baby GPT-sized bidirectional transformer
n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2
attention_type = 'bidirectional'

learning_rate = 1e-3
max_iters = 5000
lr_decay_iters = 5000
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100

eval_interval = 250
eval_iters = 200  # also the size of the producer's validation set
log_interval = 10
