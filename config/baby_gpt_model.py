# The model and optimisation settings of the nanoGPT-scale configs (a "baby GPT": 6 layers, 6 heads,
# 384 wide, 256 characters of context), shared by config/train_char_diffusion.py,
# config/train_char_random_replacement_targets_full.py and
# config/train_char_inference_replacement_targets_full_agressive.py, so their checkpoints have one
# architecture (the inference provider loads the random-replacement run's checkpoints). Included with
#   exec(open(os.path.join(os.path.dirname(__file__), 'baby_gpt_model.py')).read())
# It is not a job by itself.

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

eval_interval = 250
eval_iters = 200             # also the size of the producer's validation set
log_interval = 10
