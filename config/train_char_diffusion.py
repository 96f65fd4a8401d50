# Unmasking (masked diffusion) model on Tiny Shakespeare characters.
# Data: the char_diffusion provider with the 'complex' stage curriculum, light to very heavy masking.
#   python prepare.py config/train_char_diffusion.py     (or let train.py start the producer)
#   python train.py config/train_char_diffusion.py

import os
exec(open(os.path.join(os.path.dirname(__file__), 'baby_gpt_model.py')).read())  # model + optimiser

out_dir = 'out-char-diffusion'
wandb_run_name = 'char-diffusion'
training_type = 'unmasking'

# data: the provider reads these too (see docs/data.md)
dataset = 'char_diffusion'
composition_config = 'complex'  # data/char_diffusion/config/complex.py: stage lists, use_all_stages_for_training
