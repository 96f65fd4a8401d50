# Masked diffusion on text8 at the literature's scale, for a GPU: 12 layers, 12 heads, 768 wide,
# sequence length 256 (the D3PM / SEDD / MDLM / MD4 text8 model), with MD4's published text8 recipe
# (google-deepmind/md4, md4/configs/md4/text8.py): batch 512, 1M steps, AdamW 3e-4 with 2000 warmup
# steps and cosine decay, no weight decay, beta2 0.999, no gradient clipping, no dropout, trained on the
# NELBO (t ~ U(0, 1), 1/t weighting). docs/results.md says which paper each number comes from and what
# this project does not have (EMA weights, time conditioning). Not run here: no GPU was lent.
# $ python train.py config/train_text8.py
# $ python train.py config/train_text8_autoregressive.py
# $ python evaluate.py --out_dir=out-text8 --reference_out_dir=out-text8-autoregressive --sections=test
# tests/test_configs.py keeps the autoregressive twin's model and optimiser equal to this one.

out_dir = 'out-text8'
eval_interval = 5000         # MD4 evaluates every 5000 steps
eval_iters = 100             # 100 x 64 validation windows of 256: 1.6M characters
log_interval = 100
training_type = 'unmasking'

# data: the provider reads these too (see docs/data.md)
dataset = 'char_diffusion'
corpus = 'text8'
data_dir = 'data/char_diffusion/text8'
batch_size = 64
gradient_accumulation_steps = 8  # 8 x 64 = 512 sequences per step (MD4), in micro-batches that fit one GPU
block_size = 256
batches_per_file = 100
# masked diffusion's own forward process: every row masked with probability t ~ U(0, 1), stratified
use_all_stages_for_training = True
unmasking_stages = [{'type': 'uniform'}]
validation_stages = [{'type': 'uniform'}]
loss_weighting = 'elbo'      # the NELBO itself, as MD4 and MDLM train

n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.0                # MD4 (its sweep also tried 0.05; MDLM's code defaults to 0.1)
attention_type = 'bidirectional'
pos_encoding = 'rotary'

learning_rate = 3e-4
max_iters = 1_000_000
lr_decay_iters = 1_000_000
min_lr = 0.0                 # MD4's cosine decays to zero
warmup_iters = 2000
weight_decay = 0.0
beta1 = 0.9
beta2 = 0.999
grad_clip = 0.0              # MD4 clips nothing (MDLM's code clips at 1.0)
