"""Training and cross-validation of the motion network (library side of ``lipdub.motion.train``).

Losses: MSE on the canonical offsets (in units of their total variance) plus a per-window Pearson
term on the inner-lip aperture. The correlation term matters because speakers differ mostly in
*amplitude*: MSE alone pulls predictions towards a timid average, while the benchmark (and the
viewer) care about *when* the mouth opens and closes. Two *spread* terms fight that regression to
the mean directly: per window, the predicted aperture's standard deviation and the standard
deviation of its frame-to-frame velocity must match the real mouth's (``spread_weight``); an
uncertain model can no longer hide in a half-open average, and closures stay sharp. A *closure*
term (``closure_weight``) penalises opening where the real lips are shut (p/b/m, pauses). An
optional speaker-adversarial term (``adversary_weight``) asks the states to hide who is speaking.

Sampling is balanced by speaker (one GRID speaker has 12 of the 16 minutes): each batch item draws
a speaker uniformly, then one of its clips by length, then a window; with ``augment_p`` it reads
one of the clip's augmented audio views (``lipdub.motion.augment``: other pitch, room, noise,
codec) instead of the original.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from lipdub.motion import representation as rep
from lipdub.motion.evaluation import CLOSED
from lipdub.motion.modules import MotionNet


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch: int = 32
    window: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-2
    width: int = 128
    dilations: tuple[int, ...] = (1, 2, 4, 2, 1)
    n_code: int = 16
    corr_weight: float = 1.0
    spread_weight: float = 0.0   # aperture std + velocity std matching per window (0 = v1 loss)
    closure_weight: float = 0.0  # penalty on opening where the real lips are closed (closure_miss)
    velocity_weight: float = 0.0  # per-window Pearson term on the aperture's frame-to-frame change
    # Speaker-adversarial term: a linear probe learns the training speaker from the net's states,
    # and the net is penalised where the probe is sure (confusion loss), so the states keep little
    # of who is speaking.
    adversary_weight: float = 0.0
    # "speaker": each training speaker's offsets scaled to the corpus's median aperture spread
    # (``speaker_scaled``), so the net need not guess a speaker's amplitude from the voice.
    target_scale: str = "none"
    # Subtract from each training clip's targets the part its head pose explains (``pose.py``,
    # from the alignment points the clip cache keeps): label noise the audio cannot predict.
    pose_clean: bool = False
    noise: float = 0.1
    time_mask: int = 6
    dropout: float = 0.1
    in_dropout: float = 0.2
    threads: int = 1  # 2 threads on 2 shared cores ran 10x slower than 1 here
    augment_p: float = 0.0  # chance a batch item reads an augmented view of its clip's audio
    # Per-recording mean normalisation of the Whisper input (``lipdub.motion.feature_norm``):
    # "none", "utterance" or "causal" (running mean over ``input_norm_seconds``). Applied to the
    # clips by ``lipdub.motion.train`` before training and prediction; the shipped inference does
    # not apply it, so only cross-validation runs may use it.
    input_norm: str = "none"
    input_norm_seconds: float = 4.0
    input_norm_parts: str = "whisper"   # or "whisper+mel"
    # PocketSphinx phone tracks beside the other inputs (``lipdub.motion.phones``); as with
    # ``input_norm``, only cross-validation runs may use them (inference does not compute them).
    phones: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def _pad(x: np.ndarray, r: int) -> np.ndarray:
    """Edge-replicate ``r`` frames on both sides: what inference does at a file's ends."""
    return np.concatenate([np.repeat(x[:1], r, 0), x, np.repeat(x[-1:], r, 0)]) if r else x


def pca(targets: list[np.ndarray], n_code: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(P,)`` and basis ``(n_code, P)`` (rows: components times their std)."""
    y = np.concatenate(targets).astype(np.float64)
    mean = y.mean(0)
    _, s, vt = np.linalg.svd(y - mean, full_matrices=False)
    std = s[:n_code] / math.sqrt(len(y))
    return mean.astype(np.float32), (vt[:n_code] * std[:, None]).astype(np.float32)


class Sampler:
    """Speaker-balanced random windows with edge-padded input context."""

    def __init__(self, clips, window: int, r: int, rng: np.random.Generator):
        self.window, self.r, self.rng = window, r, rng
        by_spk: dict[str, list] = {}
        for c in clips:
            by_spk.setdefault(c.speaker, []).append(c)
        self.speakers = sorted(by_spk)
        self.by_spk = by_spk
        self.padded = {id(c): _pad(c.x, r) for c in clips}
        self.views = {id(c): [_pad(v, r) for v in c.views] for c in clips}

    def batch(self, size: int, augment_p: float = 0.0):
        """(inputs, targets, mask, speaker of each item: its index into ``speakers``)."""
        L, r = self.window, self.r
        P = self.by_spk[self.speakers[0]][0].target.shape[1]
        xs = np.zeros((size, L + 2 * r, self.padded[next(iter(self.padded))].shape[1]), np.float32)
        ys = np.zeros((size, L, P), np.float32)
        ms = np.zeros((size, L), np.float32)
        speakers = torch.zeros(size, dtype=torch.long)
        for b in range(size):
            speakers[b] = k = int(self.rng.integers(len(self.speakers)))
            clips = self.by_spk[self.speakers[k]]
            lens = np.array([c.n for c in clips], np.float64)
            c = clips[self.rng.choice(len(clips), p=lens / lens.sum())]
            xp = self.padded[id(c)]
            views = self.views[id(c)]
            if views and self.rng.random() < augment_p:
                xp = views[int(self.rng.integers(len(views)))]
            if c.n >= L:
                s = int(self.rng.integers(c.n - L + 1))
                xs[b] = xp[s:s + L + 2 * r]
                ys[b] = c.target[s:s + L]
                ms[b] = 1
            else:
                xs[b] = _pad(xp, 0)[np.clip(np.arange(L + 2 * r), 0, len(xp) - 1)]
                ys[b, :c.n] = c.target
                ms[b, :c.n] = 1
        return torch.from_numpy(xs), torch.from_numpy(ys), torch.from_numpy(ms), speakers


def masked_pearson(a: torch.Tensor, b: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Mean over windows of the Pearson r of ``a`` and ``b`` (B, L) where ``m`` is 1."""
    n = m.sum(1).clamp(min=1)
    am = a - (a * m).sum(1, keepdim=True) / n[:, None]
    bm = b - (b * m).sum(1, keepdim=True) / n[:, None]
    cov = (am * bm * m).sum(1)
    va = (am * am * m).sum(1)
    vb = (bm * bm * m).sum(1)
    r = cov / torch.sqrt(va * vb + 1e-8)
    # Windows where the real mouth barely moves carry no timing information.
    w = (vb / n > 1e-6).float()
    return (r * w).sum() / w.sum().clamp(min=1)


def masked_std(a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    n = m.sum(1).clamp(min=1)
    mu = (a * m).sum(1, keepdim=True) / n[:, None]
    return torch.sqrt((((a - mu) ** 2) * m).sum(1) / n + 1e-10)


def spread_mismatch(a: torch.Tensor, b: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Squared difference of per-window std of ``a`` and ``b`` (B, L), relative to ``b``'s spread."""
    sa, sb = masked_std(a, m), masked_std(b, m)
    return ((sa - sb) ** 2).mean() / ((sb ** 2).mean() + 1e-8)


def closure_miss(a: torch.Tensor, b: torch.Tensor, m: torch.Tensor, closed: float = CLOSED) -> torch.Tensor:
    """Mean squared *opening* of ``a`` above ``b`` (B, L) on the frames where ``b`` is closed (at most
    ``closed`` times its window's 90th percentile: ``evaluation.closures``' rule, over the window's
    frames rather than its speech frames),
    relative to ``b``'s spread. Only overshoot counts: the term asks for closures, not for less
    movement elsewhere."""
    q90 = torch.nanquantile(torch.where(m > 0, b, torch.full_like(b, float("nan"))), 0.9, dim=1, keepdim=True)
    shut = ((m > 0) & (b <= closed * q90)).float()
    over = torch.relu(a - b) ** 2 / (masked_std(b, m)[:, None] ** 2 + 1e-8)
    return (over * shut).sum() / shut.sum().clamp(min=1)


TARGET_SCALES = ("none", "speaker")
#: Bounds of ``speaker_scaled``'s factor: a speaker tracked at a tiny face is not blown up tenfold.
SCALE_LIMITS = (0.5, 2.0)


def speaker_scaled(clips, speech_of) -> list:
    """Copies of ``clips`` whose targets are scaled, speaker by speaker, so that every speaker's
    aperture spread during speech (``speech_of(clip)``: a boolean mask) is the corpus median.

    Speakers differ mostly in amplitude, which the voice barely tells: with raw targets the MSE term
    rewards guessing it from who is speaking. Held-out amplitude is set afterwards by the amplitude
    maps (``lipdub.motion.calibrate``), so only the timing needs learning.
    """
    import copy

    spread: dict[str, list[np.ndarray]] = {}
    for c in clips:
        spread.setdefault(c.speaker, []).append(c.aperture[speech_of(c)])
    sd = {s: float(np.std(np.concatenate(v))) if sum(map(len, v)) > 25 else 0.0 for s, v in spread.items()}
    known = [v for v in sd.values() if v > 0]
    target = float(np.median(known)) if known else 0.0
    out = []
    for c in clips:
        k = float(np.clip(target / sd[c.speaker], *SCALE_LIMITS)) if sd[c.speaker] > 0 else 1.0
        scaled = copy.copy(c)
        scaled.target = (c.target * k).astype(np.float32)
        out.append(scaled)
    return out


def pose_cleaned(clips) -> list:
    """Copies of canonicalised ``clips`` whose targets lack the part of the mouth's offsets that
    each clip's head pose explains (every point, none of the inner-lip gap: the aperture is
    unchanged), from the alignment points and matrices ``dataset.canonicalise`` kept."""
    import copy

    from lipdub.face import STABLE_POINTS
    from lipdub.motion.dataset import filled_track
    from lipdub.motion.pose import pose_deformation, pose_points

    out = []
    for c in clips:
        pts = pose_points(filled_track(c), c.matrices, c.meta["factor"], STABLE_POINTS)
        part = pose_deformation(pts, c.mouth, c.neutral, jaw_only=False)
        cleaned = copy.copy(c)
        cleaned.target = (c.target - part.reshape(c.n, -1)).astype(np.float32)
        out.append(cleaned)
    return out


def fit(clips, cfg: TrainConfig, seed: int = 0, log=None) -> MotionNet:
    """Train one network on ``clips`` (already canonicalised, offsets applied)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    torch.set_num_threads(cfg.threads)
    mean, basis = pca([c.target for c in clips], cfg.n_code)
    net = MotionNet(clips[0].x.shape[1], torch.from_numpy(basis), cfg.width, tuple(cfg.dilations),
                    dropout=cfg.dropout, in_dropout=cfg.in_dropout)
    allx = np.concatenate([c.x for c in clips])
    net.mu.copy_(torch.from_numpy(allx.mean(0)))
    net.sd.copy_(torch.from_numpy(allx.std(0) + 1e-3))
    net.mean.copy_(torch.from_numpy(mean))
    total_var = float(np.concatenate([c.target for c in clips]).var(0).sum())
    apv = torch.from_numpy(rep.aperture_vector())
    sampler = Sampler(clips, cfg.window, net.receptive_field, rng)
    groups = [{"params": list(net.parameters())}]
    probe = None
    if cfg.adversary_weight:
        probe = torch.nn.Linear(cfg.width, len(sampler.speakers))
        groups.append({"params": list(probe.parameters()), "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    sd = net.sd
    net.train()
    for step in range(cfg.steps):
        x, y, m, speakers = sampler.batch(cfg.batch, cfg.augment_p)
        # Augment in normalised units: Gaussian noise and short time masks (set to the mean).
        x = x + cfg.noise * torch.randn_like(x) * sd
        if cfg.time_mask:
            for b in range(len(x)):
                if rng.random() < 0.5:
                    w = int(rng.integers(1, cfg.time_mask + 1))
                    s = int(rng.integers(0, x.shape[1] - w))
                    x[b, s:s + w] = net.mu
        if probe is None:
            pred = net(x)
        else:
            h = net.hidden(x)
            pred = net.decode(h)
            pooled = h.mean(2)
            # The probe learns the speaker from states it cannot change; the net is asked to
            # leave it guessing (its output near uniform: bounded, unlike a reversed gradient).
            probe_ce = torch.nn.functional.cross_entropy(probe(pooled.detach()), speakers)
            guess = torch.nn.functional.linear(pooled, probe.weight.detach(), probe.bias.detach())
            confusion = -torch.log_softmax(guess, dim=1).mean()
        mse = (((pred - y) ** 2).sum(-1) * m).sum() / m.sum().clamp(min=1) / total_var
        pa, ya = pred @ apv, y @ apv
        r = masked_pearson(pa, ya, m)
        loss = mse + cfg.corr_weight * (1 - r)
        m2 = m[:, 1:] * m[:, :-1]  # frames whose velocity is defined
        if cfg.spread_weight:
            loss = loss + cfg.spread_weight * (
                spread_mismatch(pa, ya, m) + spread_mismatch(pa.diff(dim=1), ya.diff(dim=1), m2))
        if cfg.closure_weight:
            loss = loss + cfg.closure_weight * closure_miss(pa, ya, m)
        if cfg.velocity_weight:
            loss = loss + cfg.velocity_weight * (1 - masked_pearson(pa.diff(dim=1), ya.diff(dim=1), m2))
        if probe is not None:
            loss = loss + probe_ce + cfg.adversary_weight * confusion
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        if log and (step % 250 == 0 or step == cfg.steps - 1):
            log(f"step {step:5d} mse {mse.item():.3f} r {r.item():.3f}"
                + (f" speaker CE {probe_ce.item():.2f}" if probe is not None else ""))
    net.eval()
    return net


@torch.no_grad()
def predict(net, x: np.ndarray) -> np.ndarray:
    """Offsets ``(N, P)`` for one clip's prepared input ``(N, F)`` (edge-padded, whole clip)."""
    r = net.receptive_field
    return net(torch.from_numpy(_pad(x, r)[None]))[0].numpy()


def shuffled_input(clip, others, rng: np.random.Generator) -> np.ndarray:
    """Another speaker's audio features, tiled/cropped to ``clip``'s length: the shuffled control."""
    pool = [o for o in others if o.speaker != clip.speaker] or others
    other = pool[int(rng.integers(len(pool)))]
    idx = np.arange(clip.n) % other.n
    return other.x[idx]


def training_set(clips, fold_of: dict[str, int], folds, exclude=()) -> list:
    """The clips of speakers in ``folds``, less those named in ``exclude`` (a speed view goes
    with its original, ``meta["base"]``)."""
    return [c for c in clips if fold_of[c.speaker] in folds and c.meta.get("base", c.name) not in exclude]


def cross_validate(clips, cfg: TrainConfig, fold_of: dict[str, int], test_folds, train_folds=None,
                   seed: int = 0, members: int = 1, log=None, exclude_from_training=(),
                   extra_training=()):
    """Out-of-fold offsets for every clip of ``test_folds``, each predicted by models trained only
    on ``train_folds`` (default: every other fold) minus that test fold; also the same models fed
    another held-out speaker's audio (shuffled control) and the trained nets per fold.

    ``fold_of`` maps speaker → fold (the fixed fold file). ``exclude_from_training``: clip names
    never trained on (they may still be predicted when held out). ``extra_training``: clips only
    trained on (speed views), each left out with its original (``meta["base"]``).
    """
    out, shuffled, nets_by_fold = {}, {}, {}
    rng = np.random.default_rng(seed + 7)
    all_folds = sorted(set(fold_of.values()))
    for k in test_folds:
        allowed = set(all_folds if train_folds is None else train_folds) - {k}
        train = training_set([*clips, *extra_training], fold_of, allowed, exclude_from_training)
        test = [c for c in clips if fold_of[c.speaker] == k]
        if not test:
            continue
        if log:
            log(f"fold {k}: {len(train)} train clips ({len({c.speaker for c in train})} speakers), "
                f"{len(test)} held-out clips ({len({c.speaker for c in test})} speakers)")
        nets = [fit(train, cfg, seed=seed * 100 + k * 10 + j, log=log) for j in range(members)]
        nets_by_fold[k] = nets
        for c in test:
            out[c.name] = np.mean([predict(n, c.x) for n in nets], axis=0)
            xs = shuffled_input(c, test, rng)
            shuffled[c.name] = np.mean([predict(n, xs) for n in nets], axis=0)
    return out, shuffled, nets_by_fold


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64) - np.mean(a)
    b = np.asarray(b, np.float64) - np.mean(b)
    d = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / d) if d > 0 else 0.0


def best_lag(pred_ap: np.ndarray, true_ap: np.ndarray, max_lag: int = 6) -> tuple[int, float, float]:
    """(lag, r at lag, r at 0). ``lag > 0``: the real mouth moves ``lag`` frames *after* the audio."""
    rs = {}
    n = len(pred_ap)
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            a, b = pred_ap[:n - lag], true_ap[lag:]
        else:
            a, b = pred_ap[-lag:], true_ap[:n + lag]
        rs[lag] = pearson(a, b) if len(a) > 8 else 0.0
    lag = max(rs, key=rs.get)
    return lag, rs[lag], rs[0]


def shift_clip(clip, lag: int):
    """Re-pair a clip's audio and mouth by ``lag`` frames (trims the non-overlapping ends)."""
    if lag == 0:
        return clip
    import copy

    c = copy.copy(clip)
    n = clip.n
    if lag > 0:
        c.x, c.vad, c.env = clip.x[:n - lag], clip.vad[:n - lag], clip.env[:n - lag]
        c.views = [v[:n - lag] for v in clip.views]
        c.target = clip.target[lag:]
    else:
        c.x, c.vad, c.env = clip.x[-lag:], clip.vad[-lag:], clip.env[-lag:]
        c.views = [v[-lag:] for v in clip.views]
        c.target = clip.target[:n + lag]
    return c
