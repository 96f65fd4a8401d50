# The README's next step after the quick job: the same small model trained four times as long
# (3,200 steps, about 19 minutes on 2 CPU cores), far enough that most of what it writes is real
# words at the diversity of real text (docs/results.md, "A recipe that writes words").
# $ python train.py config/train_shakespeare_char_words.py
# $ python sample.py --out_dir=out-shakespeare-char-words
# Chosen from the compute curve (experiments/compute_curve.sh): at this size the validation NELBO
# keeps falling with steps, and the model's words turn real between 2x and 8x the quick budget.
# A warmup-stable-decay schedule, so a checkpoint of the stable phase can be decayed into a shorter
# model (docs/training.md, "Branching a decay"), or the run extended with --max_iters and resumed.

out_dir = 'out-shakespeare-char-words'
eval_interval = 400
eval_iters = 20
log_interval = 50
always_save_checkpoint = True  # every stable-phase checkpoint is a starting point for a branch

# data: the quick config's queue settings and stage mix, in a queue of its own
dataset = 'char_diffusion'
data_dir = 'data/char_diffusion/words'
batch_size = 32
block_size = 128
batches_per_file = 25
composition_config = 'quick'  # data/compositions/quick.py: the quick config's stage mix

# the quick model: 4 layers, 4 heads, 128 wide, 128 characters of context
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
pos_encoding = 'rotary'

learning_rate = 2e-3
max_iters = 3200             # 4x the quick config's 800
lr_schedule = 'wsd'          # the peak rate until iter 2,560, then down to min_lr over the last 20%
decay_fraction = 0.2
min_lr = 2e-4
warmup_iters = 50
beta2 = 0.99
