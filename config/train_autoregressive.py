# The autoregressive reference: a causal model of the same size as
# config/train_shakespeare_char_quick.py, trained on next-character prediction, to compare the
# diffusion models against: its validation loss is directly comparable to the diffusion model's
# negative ELBO (both bound the same per-character likelihood; evaluate.py reports both), and it
# scores the text the diffusion samplers write.
# $ python train.py config/train_autoregressive.py
#
# The model reads the clean text. objectives.clean_text rebuilds it from any queue (y where it has a
# label, x elsewhere), so the cheapest provider does: char_diffusion's default BERT masking, whose
# corruption it simply undoes. Its own data_dir, so it never takes files meant for another run.

import os
exec(open(os.path.join(os.path.dirname(__file__), 'quick_model.py')).read())  # model + optimiser

out_dir = 'out-autoregressive'

dataset = 'char_diffusion'
data_dir = 'data/char_diffusion/autoregressive'

training_type = 'autoregressive'
attention_type = 'causal'
