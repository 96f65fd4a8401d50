# The README's main job: a small unmasking (masked diffusion) model of Tiny Shakespeare that
# trains on a laptop-class CPU in about 5 minutes and already writes recognisable words.
# $ python train.py config/train_shakespeare_char_quick.py
# $ python sample.py --out_dir=out-shakespeare-char-quick
# The remasking and autoregressive quick configs use the same model and optimiser settings, so the
# models can be used (and compared) together; tests/test_configs.py keeps them equal.

out_dir = 'out-shakespeare-char-quick'
eval_interval = 200          # few evaluations: on a CPU every minute counts
eval_iters = 20              # the validation set: 20 batches, the same at every evaluation
log_interval = 25
always_save_checkpoint = False

# data: the provider reads these too (see docs/data.md)
dataset = 'char_diffusion'
data_dir = 'data/char_diffusion/quick'  # its own queue, so other char_diffusion configs cannot clash with it
batch_size = 32
block_size = 128
batches_per_file = 25
composition_config = 'quick'  # data/compositions/quick.py: the four-stage mix, every row its own masking rate

# a small model: 4 layers, 4 heads, 128 wide, 128 characters of context
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0                # too few steps to overfit
pos_encoding = 'rotary'      # relative positions: a bidirectional model finds its neighbours much sooner

learning_rate = 2e-3         # small models can take a large step
max_iters = 800
lr_decay_iters = 800
min_lr = 2e-4
warmup_iters = 50
beta2 = 0.99
