# Self-bootstrapping edit model: picked positions (the heavy 'complex' stages) are filled mostly with
# what the random-replacement run's newest checkpoint predicts there, plus random characters, [MASK]
# and fragments of other text; the target is the original text at every position.
# Train config/train_char_random_replacement_targets_full.py first (or alongside: until its first
# checkpoint lands the prediction branch gets random characters), then
#   python prepare.py config/train_char_inference_replacement_targets_full_agressive.py
#   python train.py config/train_char_inference_replacement_targets_full_agressive.py
# See docs/inference_replacement.md. Model and optimiser as config/train_char_diffusion.py.

out_dir = 'out-char-inference-replacement'
eval_interval = 250
eval_iters = 200
log_interval = 10
wandb_run_name = 'char-inference-replacement'
training_type = 'unmasking'

# data: the provider reads these too
dataset = 'char_inference_replacement'
composition_config = 'complex'  # data/compositions/complex.py
train_corruption_mixture = (0.35, 0.2, 0.15, 0.3)  # (prediction, random, mask, fragment), train and val
dataset_partial_targets = False  # full targets: the loss covers every position
batch_size = 64
block_size = 256
batches_per_file = 100
max_backlog_files = 8

# the watched run: the out_dir of config/train_char_random_replacement_targets_full.py
checkpoint_dir = 'out-char-random-replacement'
inference_training_type = 'unmasking'  # it saves ckpt_unmasking_<iter>.pt
inference_refresh_seconds = 60.0
inference_device = 'auto'        # the GPU when there is one: inference is most of the provider's work
prediction_temperature = 1.0
prediction_sampling = False      # argmax predictions
fallback_to_random = True        # keep batches flowing before the first checkpoint

n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2
attention_type = 'bidirectional'
pos_encoding = 'rotary'

learning_rate = 1e-3
max_iters = 5000
lr_decay_iters = 5000
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100
