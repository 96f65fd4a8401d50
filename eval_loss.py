"""
evaluate.py's loss section: the unmasking model's validation loss per validation stage (train.py's own
number, from validation rows rebuilt in-process by the checkpoint's provider), its masked-diffusion
negative ELBO in bits per character, and the autoregressive reference's bits per character on the same
characters: the gap between the two is the price of diffusion. See docs/evaluation.md.
"""

import itertools

import torch
from tqdm import tqdm

import eval_metrics as em
from configurator import Config
from dataset_consumer import batch_on_device
from eval_common import print_table
from objectives import validation_loss
from prepare_streaming import describe_changes, load_provider_class

SCORED_FROM = 1  # the first character of every validation window is given to both models, not scored


def validation_batches(ckpt, device):
    """The validation batches train.py reads (at most eval_iters of them), made in-process from the
    checkpoint's saved config: its provider rebuilds exactly the validation files its producer wrote."""
    saved = ckpt['config']
    provider_cls = load_provider_class(saved['dataset'])
    values = {key: saved.get(key, default) for key, default in provider_cls.config_defaults().items()}
    provider = provider_cls(Config(values))
    rebuilt = provider.build_meta()
    if ckpt['meta'].get('fingerprint') not in (None, rebuilt['fingerprint']):
        print(f"warning: the validation rows rebuilt from the saved config differ from the training queue's "
              f"({describe_changes(ckpt['meta'].get('data_config', {}), rebuilt['data_config'])})")
    batch_size, device = values['batch_size'], torch.device(device)
    batches = (batch_on_device(tensors, index, batch_size, device)
               for tensors in provider.validation_files()
               for index in range(len(tensors['x']) // batch_size))
    return itertools.islice(batches, values['eval_iters'])


def stage_losses(models, device):
    """train.py's validation loss (nats per labelled position), overall and per validation stage."""
    saved = models.checkpoint.get('config') or {}
    if 'dataset' not in saved:
        print(f"note: {models.path} saved no dataset config: the per-stage validation loss is left out")
        return None
    losses = validation_loss(models.unmasker.model, validation_batches(models.checkpoint, device),
                             models.checkpoint['meta'], models.checkpoint['training_type'],
                             autocast=models.unmasker.ctx)
    return {key.removeprefix('val/'): value for key, value in losses.items()}


def loss_report(cfg, models, windows, device):
    """Validation loss per stage, and the masked-diffusion NELBO against the autoregressive reference
    on the same characters: every window of the validation split, its first character given to both
    (SCORED_FROM), standard errors across windows, the gap from window-by-window pairs."""
    out = dict(stage_losses=stage_losses(models, device))
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    bar = tqdm(total=len(windows) * cfg.elbo_draws, desc='NELBO rows', leave=False)
    nelbo = em.window_elbo_bits(models.unmasker, windows, models.vocab.n_real, models.vocab.mask_token_id, generator,
                                cfg.elbo_estimator, cfg.elbo_draws, SCORED_FROM, cfg.eval_batch_size,
                                lambda done, total: bar.update(done - bar.n))
    bar.close()
    mean, se = em.mean_and_se(nelbo.numpy())
    out['elbo'] = dict(bits_per_char=mean, se=se, windows=len(windows), draws=cfg.elbo_draws,
                       window_length=windows.shape[1], scored_from=SCORED_FROM, estimator=cfg.elbo_estimator)
    out['reference'] = out['gap'] = out['reference_bits_per_char'] = out['gap_bits_per_char'] = None
    if models.reference is not None:
        reference = em.window_bits_per_char(models.reference, windows, models.vocab.n_real, cfg.eval_batch_size)
        mean, se = em.mean_and_se(reference.numpy())
        out['reference'] = dict(bits_per_char=mean, se=se)
        out['gap'] = em.paired_gap(nelbo, reference)
        out['reference_bits_per_char'], out['gap_bits_per_char'] = mean, out['gap']['bits_per_char']
    return out


def print_loss(loss, paths):
    rows = [[f"val loss, {'all stages' if name == 'loss' else name} (nats/predicted char, as train.py)", v]
            for name, v in (loss['stage_losses'] or {}).items()]
    e, ref, gap = loss['elbo'], loss['reference'], loss['gap']
    rows.append([f"masked-diffusion NELBO (bits/char ± SE; {e['windows']} windows x {e['draws']} masks, "
                 f"{e['estimator']})", f"{e['bits_per_char']:.4f} ± {e['se']:.4f}"])
    if ref is not None:
        rows.append(["autoregressive reference (bits/char ± SE, the same characters)",
                     f"{ref['bits_per_char']:.4f} ± {ref['se']:.4f}"])
        rows.append(["gap: NELBO - reference (bits/char ± paired SE)", f"{gap['bits_per_char']:.4f} ± {gap['se']:.4f}"])
        rows.append(["relative gap: NELBO / reference - 1", f"{100 * gap['relative']:.1f}% ± {100 * gap['relative_se']:.1f}%"])
    print_table(f"validation: {paths} (every window's first character given, the other "
                f"{e['window_length'] - e['scored_from']} scored)", ['quantity', 'value'], rows)
