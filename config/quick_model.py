# The model and optimisation settings of the quick configs, in one place: the unmasking model of
# config/train_shakespeare_char_quick.py and the remasking and autoregressive models meant to be used
# (and compared) beside it must have the same architecture. Included by those configs with
#   exec(open(os.path.join(os.path.dirname(__file__), 'quick_model.py')).read())
# It is not a job by itself.

eval_interval = 200          # few evaluations: on a CPU every minute counts
eval_iters = 20              # the validation set: 20 batches, the same at every evaluation
log_interval = 25
batches_per_file = 25

# a small model: 4 layers, 4 heads, 128 wide, 128 characters of context
batch_size = 32
block_size = 128
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
