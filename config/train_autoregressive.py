# The autoregressive reference: a causal model of the same size as
# config/train_shakespeare_char_quick.py, trained on next-character prediction, to compare the
# diffusion models against: its validation loss is directly comparable to the diffusion model's
# negative ELBO (both bound the same per-character likelihood; evaluate.py reports both), and it
# scores the text the diffusion samplers write.
# $ python train.py config/train_autoregressive.py

out_dir = 'out-autoregressive'
eval_interval = 200
eval_iters = 20
log_interval = 25

training_type = 'autoregressive'
attention_type = 'causal'

# data: the model reads the clean text. objectives.clean_text rebuilds it from any queue (y where it
# has a label, x elsewhere), so the cheapest provider does: char_diffusion's default BERT masking,
# whose corruption it simply undoes. Its own data_dir, so it never takes files meant for another run.
dataset = 'char_diffusion'
data_dir = 'data/char_diffusion/autoregressive'
batch_size = 32
block_size = 128
batches_per_file = 25

# the quick model (config/train_shakespeare_char_quick.py)
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
