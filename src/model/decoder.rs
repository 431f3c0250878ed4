//! Our own Llama-family decoder (Llama 2/3, SmolLM2, Qwen2, Qwen3).
//!
//! Two ways through the same weights:
//! - [`Mode::Train`] keeps the graph for the backward: on the CPU in f32
//!   through driftui's own fused kernels (each with its backward, see
//!   [`fused`]), elsewhere through candle ops that backpropagate (candle's
//!   own fused RMSNorm, RoPE and softmax drop gradients silently), so every
//!   trainable tensor receives its gradient;
//! - [`Mode::Fast`] is for no-grad scoring and generation with a KV cache:
//!   candle's fused kernels, and on the CPU in f32 driftui's attention over
//!   a whole sequence. (With its SwiGLU too, the PPO test's sampled
//!   trajectory moved enough to miss its score gain: that test depends on
//!   the rounding of no-grad passes.)

use super::config::{Architecture, ModelConfig};
use super::fused;
use super::lora::Lora;
use candle_core::{DType, Device, Module, Result, Tensor, D};

/// Which kernels a forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The graph kept for the backward.
    Train,
    /// No gradients.
    Fast,
}

/// A linear layer `y = x Wᵀ (+ b)`, optionally with a LoRA adapter.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub lora: Option<Lora>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight,
            bias,
            lora: None,
        }
    }

    /// `transposed`: the decoder's panel copies of its frozen weights,
    /// when it keeps them ([`Decoder::keep_transposed_weights`]).
    fn forward(
        &self,
        x: &Tensor,
        mode: Mode,
        fuse: bool,
        transposed: Option<&fused::TransposedWeights>,
    ) -> Result<Tensor> {
        let train = mode == Mode::Train;
        let frozen = !x.track_op() && !self.weight.track_op();
        // The fused ops take x with its leading dimensions as they come: a
        // reshape in the graph costs a zero-filled buffer and an add in
        // candle's backward.
        // A frozen base with its adapter: one fused op (see fused::lora_linear).
        let fused_lora = self.lora.as_ref().filter(|l| {
            fuse && train
                && fused::applies(x)
                && fused::applies(&self.weight)
                && !self.weight.track_op()
                && fused::applies(&l.a)
                && fused::applies(&l.b)
        });
        let y = if let Some(l) = fused_lora {
            let mask = l.dropout_mask(x.elem_count(), train);
            // The frozen base's panels, where the decoder keeps them (a
            // LoRA policy does where they fit; see lora::attach).
            let panels = transposed
                .and_then(|c| c.for_rows(x, &self.weight))
                .transpose()?;
            fused::lora_linear(x, &self.weight, panels, &l.a, &l.b, l.scale, mask)?
        } else if self.lora.is_none() && ((fuse && train) || frozen) {
            // The fused product (candle's matmul off CPU f32); with no
            // gradient to carry it still saves candle's zero-filled output
            // (scoring, generation); from W's panels when the decoder keeps
            // them and the rows are few (the same bits, see
            // fused::TransposedWeights).
            match transposed
                .filter(|_| frozen)
                .map(|c| c.for_rows(x, &self.weight))
            {
                Some(Some(wt)) => fused::linear_transposed(x, &*(wt?))?,
                _ => fused::linear(x, &self.weight)?,
            }
        } else {
            return self.forward_plain(x, train, (fuse && train) || frozen);
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    /// The unfused layer (an adapter beside a trained base, or candle's
    /// product): on 2-D rows, reshaped back.
    fn forward_plain(&self, x: &Tensor, train: bool, fused_product: bool) -> Result<Tensor> {
        let mut dims = x.dims().to_vec();
        let in_dim = *dims.last().expect("linear input has a last dimension");
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = x.reshape((rows, in_dim))?;
        let mut y = if fused_product {
            fused::linear(&x2, &self.weight)?
        } else {
            x2.matmul(&self.weight.t()?)?
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        if let Some(lora) = &self.lora {
            y = (y + lora.delta(&x2, train)?)?;
        }
        *dims.last_mut().expect("non-empty") = self.weight.dim(0)?;
        y.reshape(dims)
    }
}

#[derive(Clone)]
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
}

#[derive(Clone)]
struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

#[derive(Clone)]
struct Block {
    input_norm: Tensor,
    attn: Attention,
    post_norm: Tensor,
    mlp: Mlp,
}

/// Keys and values of earlier positions, one pair per layer.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    pub fn new(layers: usize) -> Self {
        Self {
            layers: vec![None; layers],
        }
    }

    /// Positions already held.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .and_then(|(k, _)| k.dim(2).ok())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A cache whose row `r` is this cache's row `rows[r]` (u32 indices):
    /// one prompt prefix computed once, continued several ways.
    pub fn select_rows(&self, rows: &Tensor) -> Result<KvCache> {
        let layers = self
            .layers
            .iter()
            .map(|l| match l {
                Some((k, v)) => Ok(Some((k.index_select(rows, 0)?, v.index_select(rows, 0)?))),
                None => Ok(None),
            })
            .collect::<Result<_>>()?;
        Ok(KvCache { layers })
    }
}

/// Per-call inputs besides the token ids.
#[derive(Debug, Default)]
pub struct ForwardOptions<'a> {
    /// Position of each token, (batch, seq) u32; default `offset..offset+seq`
    /// with `offset` the cache length.
    pub positions: Option<&'a Tensor>,
    /// Additive attention bias, (batch, 1, seq, kv_seq), 0 or -inf: replaces
    /// the plain causal mask (left-padded batches need it).
    pub attn_bias: Option<&'a Tensor>,
    pub cache: Option<&'a mut KvCache>,
}

/// The weights a decoder needs, by Hugging Face name.
pub trait WeightSource {
    fn get(&mut self, name: &str, shape: &[usize]) -> anyhow::Result<Tensor>;
    fn get_opt(&mut self, name: &str, shape: &[usize]) -> anyhow::Result<Option<Tensor>>;
}

/// A Llama-family decoder.
pub struct Decoder {
    pub cfg: ModelConfig,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    /// `None` when the head is tied to the embedding.
    lm_head: Option<Linear>,
    inv_freq: Tensor,
    dtype: DType,
    device: Device,
    /// Use the fused CPU kernels of [`fused`] where they apply.
    fuse: bool,
    /// Panel copies of the frozen weights (model::streamed), made on first use, when
    /// [`Decoder::keep_transposed_weights`] asked for them.
    transposed: Option<std::sync::Arc<fused::TransposedWeights>>,
}

impl Decoder {
    /// Build from named weights (Hugging Face layout).
    pub fn from_weights(cfg: &ModelConfig, src: &mut dyn WeightSource) -> anyhow::Result<Self> {
        let h = cfg.hidden_size;
        let hd = cfg.head_dim;
        let q_out = cfg.num_attention_heads * hd;
        let kv_out = cfg.num_key_value_heads * hd;
        let i = cfg.intermediate_size;
        let embed = src.get("model.embed_tokens.weight", &[cfg.vocab_size, h])?;
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let mut lin =
                |name: &str, out: usize, inp: usize, bias: bool| -> anyhow::Result<Linear> {
                    let w = src.get(&format!("{p}.{name}.weight"), &[out, inp])?;
                    let b = if bias {
                        Some(src.get(&format!("{p}.{name}.bias"), &[out])?)
                    } else {
                        None
                    };
                    Ok(Linear::new(w, b))
                };
            let ab = cfg.attention_bias;
            let attn = Attention {
                q: lin("self_attn.q_proj", q_out, h, ab)?,
                k: lin("self_attn.k_proj", kv_out, h, ab)?,
                v: lin("self_attn.v_proj", kv_out, h, ab)?,
                o: lin("self_attn.o_proj", h, q_out, false)?,
                q_norm: None,
                k_norm: None,
            };
            let mlp = Mlp {
                gate: lin("mlp.gate_proj", i, h, false)?,
                up: lin("mlp.up_proj", i, h, false)?,
                down: lin("mlp.down_proj", h, i, false)?,
            };
            let mut attn = attn;
            if cfg.architecture == Architecture::Qwen3 {
                attn.q_norm = Some(src.get(&format!("{p}.self_attn.q_norm.weight"), &[hd])?);
                attn.k_norm = Some(src.get(&format!("{p}.self_attn.k_norm.weight"), &[hd])?);
            }
            blocks.push(Block {
                input_norm: src.get(&format!("{p}.input_layernorm.weight"), &[h])?,
                attn,
                post_norm: src.get(&format!("{p}.post_attention_layernorm.weight"), &[h])?,
                mlp,
            });
        }
        let norm = src.get("model.norm.weight", &[h])?;
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(Linear::new(
                src.get("lm_head.weight", &[cfg.vocab_size, h])?,
                None,
            ))
        };
        let device = embed.device().clone();
        let inv_freq: Vec<f32> = cfg.rope_inv_freq().into_iter().map(|f| f as f32).collect();
        let inv_freq = Tensor::new(inv_freq, &device)?;
        Ok(Self {
            cfg: cfg.clone(),
            dtype: embed.dtype(),
            embed,
            blocks,
            norm,
            lm_head,
            inv_freq,
            device,
            // DRIFTUI_FUSED=0 runs the plain candle ops instead, to compare.
            fuse: std::env::var("DRIFTUI_FUSED").map_or(true, |v| v != "0"),
            transposed: None,
        })
    }

    /// The same decoder with every tensor passed through `f` (LoRA dropout
    /// kept or set to 0).
    fn map_tensors(
        &self,
        f: &dyn Fn(&Tensor) -> Result<Tensor>,
        dropout: Option<f32>,
    ) -> Result<Decoder> {
        let lin = |l: &Linear| -> Result<Linear> {
            Ok(Linear {
                weight: f(&l.weight)?,
                bias: l.bias.as_ref().map(f).transpose()?,
                lora: match &l.lora {
                    Some(a) => Some(Lora {
                        a: f(&a.a)?,
                        b: f(&a.b)?,
                        dropout: dropout.unwrap_or(a.dropout),
                        ..a.clone()
                    }),
                    None => None,
                },
            })
        };
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            blocks.push(Block {
                attn: Attention {
                    q: lin(&b.attn.q)?,
                    k: lin(&b.attn.k)?,
                    v: lin(&b.attn.v)?,
                    o: lin(&b.attn.o)?,
                    q_norm: b.attn.q_norm.as_ref().map(f).transpose()?,
                    k_norm: b.attn.k_norm.as_ref().map(f).transpose()?,
                },
                mlp: Mlp {
                    gate: lin(&b.mlp.gate)?,
                    up: lin(&b.mlp.up)?,
                    down: lin(&b.mlp.down)?,
                },
                input_norm: f(&b.input_norm)?,
                post_norm: f(&b.post_norm)?,
            });
        }
        let lm_head = match &self.lm_head {
            Some(h) => Some(lin(h)?),
            None => None,
        };
        Ok(Decoder {
            cfg: self.cfg.clone(),
            embed: f(&self.embed)?,
            blocks,
            norm: f(&self.norm)?,
            lm_head,
            inv_freq: self.inv_freq.clone(),
            dtype: self.dtype,
            device: self.device.clone(),
            fuse: self.fuse,
            transposed: None,
        })
    }

    /// The same weights, detached: scoring through this view builds no
    /// graph, and gives the numbers the decoder itself gives in the same
    /// mode (same storage, same kernels) — PyTorch's `no_grad`. LoRA
    /// dropout is off.
    pub fn no_grad(&self) -> Result<Decoder> {
        self.map_tensors(&|t| Ok(t.detach()), Some(0.0))
    }

    /// Set every LoRA adapter's dropout probability (in place: the adapters
    /// stay the same variables).
    pub fn set_lora_dropout(&mut self, p: f32) {
        for (_, l) in self.linears_mut() {
            if let Some(a) = l.lora.as_mut() {
                a.dropout = p;
            }
        }
    }

    /// For no-grad passes (probing, sampling): the adapters merged in where
    /// that is faster — on the CPU, when there are any — else `None`, and
    /// the decoder itself serves.
    pub fn merged_for_inference(&self) -> Result<Option<Decoder>> {
        if self.device().is_cpu() && self.linears().iter().any(|l| l.lora.is_some()) {
            Ok(Some(self.lora_merged()?))
        } else {
            Ok(None)
        }
    }

    /// A decoder for one no-grad pass that ends before the weights change
    /// again (a probe, a step's rollouts): on the CPU, the LoRA adapters
    /// merged in ([`Decoder::merged_for_inference`]) and panel copies of
    /// the weights kept where they fit in memory (the rule of
    /// [`super::LoadedModel::scoring_decoder`]): the same numbers, and on
    /// SmolLM2 sampling 4 answers ran 2.1× as fast (gemm packed every
    /// weight for every token). The copies are of the weights as they are
    /// now: drop it before the trainer's next step. `None` where the
    /// decoder itself serves (another device).
    pub fn for_inference_pass(&self) -> Result<Option<Decoder>> {
        if !self.device().is_cpu() {
            return Ok(None);
        }
        let mut d = match self.merged_for_inference()? {
            Some(d) => d,
            None => self.no_grad()?,
        };
        // The copies this decoder already keeps of frozen tensors the pass
        // shares (a LoRA base's head or embedding, and its unadapted
        // layers) serve the pass as they are; only the rest are made.
        let seed = match &self.transposed {
            Some(c) => fused::TransposedWeights::seeded_from(c),
            None => fused::TransposedWeights::default(),
        };
        let head = match &d.lm_head {
            Some(l) => &l.weight,
            None => &d.embed,
        };
        let bytes: u64 = d
            .linears()
            .iter()
            .map(|l| &l.weight)
            .chain([head])
            .filter(|w| !seed.holds(w))
            .map(|w| w.elem_count() as u64 * 4)
            .sum();
        if super::source::copies_fit(bytes, super::source::available_memory()) {
            d.transposed = Some(std::sync::Arc::new(seed));
        }
        Ok(Some(d))
    }

    /// A detached copy with every LoRA adapter merged into its base weight
    /// (W + (α/r)·B·A): for no-grad scoring on the CPU, where the adapters'
    /// two extra small products per layer cost more than their FLOPs. The
    /// numbers equal the unmerged decoder's up to float rounding (the order
    /// of the additions differs). Without adapters it shares the weights.
    pub fn lora_merged(&self) -> Result<Decoder> {
        let mut d = self.no_grad()?;
        for (_, l) in d.linears_mut() {
            if let Some(lora) = l.lora.take() {
                let delta = (lora.b.matmul(&lora.a)? * lora.scale)?.to_dtype(l.weight.dtype())?;
                l.weight = (&l.weight + delta)?.detach();
            }
        }
        Ok(d)
    }

    /// A frozen copy: the trainable variables are copied (the trainer goes
    /// on updating the originals in place), the frozen tensors shared. The
    /// copy computes exactly what the decoder computes now, through the
    /// same structure (LoRA adapters stay unmerged), so a reference model
    /// equal to the policy scores equal numbers. LoRA dropout is off.
    pub fn frozen_copy(&self) -> Result<Decoder> {
        self.map_tensors(
            &|t| {
                if t.is_variable() {
                    Ok(t.copy()?.detach())
                } else {
                    Ok(t.detach())
                }
            },
            Some(0.0),
        )
    }

    /// Keep a copy, as panels in the order the product reads them, of each
    /// frozen weight that a no-grad product of few rows reads (made on
    /// first use; see [`fused::TransposedWeights`] and
    /// [`super::streamed`]): the same numbers, faster scoring in small
    /// batches, at the cost of the copies' memory (up to the model's f32
    /// size once more; [`super::LoadedModel::scoring_decoder`] asks for
    /// them where that fits). Only for a decoder whose weights do not
    /// change in place while it lives: none of them a Var or a detached
    /// view of one (as in [`Decoder::no_grad`], or `from_weights` over a
    /// trainer's variables), unless the decoder is dropped before they
    /// change ([`Decoder::for_inference_pass`]); Vars themselves are never
    /// copied.
    pub fn keep_transposed_weights(&mut self) {
        self.transposed = Some(Default::default());
    }

    /// Stop keeping panel copies (those held are dropped): every product
    /// then reads W through gemm, for comparing the two.
    pub fn forget_transposed_weights(&mut self) {
        self.transposed = None;
    }

    /// How many panel copies of weights it holds (see
    /// [`Decoder::keep_transposed_weights`]).
    pub fn transposed_weights(&self) -> usize {
        self.transposed.as_ref().map_or(0, |c| c.len())
    }

    /// Turn the fused CPU kernels off (they are on by default), to compare
    /// them with the plain candle ops they replace.
    pub fn set_fused(&mut self, on: bool) {
        self.fuse = on;
    }

    /// Whether the fused kernels run for this decoder's tensors.
    fn fused_here(&self, mode: Mode) -> bool {
        mode == Mode::Train && self.kernels_here()
    }

    /// driftui's own CPU f32 kernels are on for this decoder's tensors (in
    /// training; without gradients only the whole-sequence attention uses them).
    fn kernels_here(&self) -> bool {
        self.fuse && self.device.is_cpu() && self.dtype == DType::F32
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn num_layers(&self) -> usize {
        self.blocks.len()
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Every linear layer of the blocks, in the order of [`Decoder::linears_mut`].
    pub fn linears(&self) -> Vec<&Linear> {
        self.blocks
            .iter()
            .flat_map(|b| {
                [
                    &b.attn.q,
                    &b.attn.k,
                    &b.attn.v,
                    &b.attn.o,
                    &b.mlp.gate,
                    &b.mlp.up,
                    &b.mlp.down,
                ]
            })
            .collect()
    }

    /// Every linear layer by its Hugging Face module name (for LoRA).
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out = Vec::new();
        for (l, b) in self.blocks.iter_mut().enumerate() {
            let p = format!("model.layers.{l}");
            out.push((format!("{p}.self_attn.q_proj"), &mut b.attn.q));
            out.push((format!("{p}.self_attn.k_proj"), &mut b.attn.k));
            out.push((format!("{p}.self_attn.v_proj"), &mut b.attn.v));
            out.push((format!("{p}.self_attn.o_proj"), &mut b.attn.o));
            out.push((format!("{p}.mlp.gate_proj"), &mut b.mlp.gate));
            out.push((format!("{p}.mlp.up_proj"), &mut b.mlp.up));
            out.push((format!("{p}.mlp.down_proj"), &mut b.mlp.down));
        }
        out
    }

    /// cos and sin tables for the given positions: (seq, hd/2) or (batch, seq, hd/2).
    fn rope_tables(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        let pos = positions.to_dtype(DType::F32)?;
        let angles = pos.unsqueeze(D::Minus1)?.broadcast_mul(&self.inv_freq)?;
        Ok((
            angles.cos()?.to_dtype(self.dtype)?,
            angles.sin()?.to_dtype(self.dtype)?,
        ))
    }

    /// The input embeddings of `ids`, (ids, hidden). As transformers'
    /// `nn.Embedding(padding_idx = pad_token_id)`: the pad token's row gets
    /// no gradient through the lookup.
    fn embed_lookup(&self, ids: &Tensor) -> Result<Tensor> {
        let flat = ids.flatten_all()?;
        let x = self.embed.index_select(&flat, 0)?;
        let Some(pad) = self.cfg.pad_token_id else {
            return Ok(x);
        };
        if !x.track_op() {
            return Ok(x);
        }
        let is_pad = flat.eq(pad)?;
        if is_pad.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? == 0.0 {
            return Ok(x);
        }
        let keep = is_pad
            .to_dtype(x.dtype())?
            .neg()?
            .affine(1.0, 1.0)?
            .unsqueeze(1)?;
        // Same values; the gradient reaches only the non-pad rows.
        x.detach() + (&x - x.detach())?.broadcast_mul(&keep)?
    }

    /// Final-normed hidden states, (batch, seq, hidden).
    pub fn hidden(&self, ids: &Tensor, mode: Mode, mut opts: ForwardOptions) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let offset = opts.cache.as_ref().map(|c| c.len()).unwrap_or(0);
        let positions = match opts.positions {
            Some(p) => p.clone(),
            None => Tensor::arange(offset as u32, (offset + t) as u32, &self.device)?,
        };
        let (cos, sin) = self.rope_tables(&positions)?;
        let mut x = self
            .embed_lookup(ids)?
            .reshape((b, t, self.cfg.hidden_size))?;
        let fuse = self.fused_here(mode);
        let kernels = self.kernels_here();
        let tw = self.transposed.as_deref();
        // The fused softmax masks causally itself; no bias tensor needed.
        let causal = match opts.attn_bias {
            Some(_) => None,
            None if fuse => None,
            None => Some(causal_bias(t, offset, &self.device)?),
        };
        let causal_offset = opts.attn_bias.is_none().then_some(offset);
        let eps = self.cfg.rms_norm_eps;
        if let Some(cache) = opts.cache.as_deref_mut() {
            if cache.layers.len() != self.blocks.len() {
                *cache = KvCache::new(self.blocks.len());
            }
        }
        for (l, block) in self.blocks.iter().enumerate() {
            let h = rms_norm(&x, &block.input_norm, eps, mode, fuse)?;
            let layer_cache = opts.cache.as_deref_mut().map(|c| &mut c.layers[l]);
            let a = self.attention(
                &block.attn,
                &h,
                &cos,
                &sin,
                causal.as_ref().or(opts.attn_bias),
                causal_offset,
                layer_cache,
                mode,
            )?;
            x = residual(&x, &a, kernels)?;
            let h = rms_norm(&x, &block.post_norm, eps, mode, fuse)?;
            let m = &block.mlp;
            let g = m.gate.forward(&h, mode, fuse, tw)?;
            let u = m.up.forward(&h, mode, fuse, tw)?;
            let gu = if fuse {
                fused::swiglu(&g, &u)?
            } else if kernels && mode == Mode::Fast {
                // candle's arithmetic on the pool's threads: the same bits.
                fused::silu_mul(&g, &u)?
            } else {
                (candle_nn::ops::silu(&g)? * u)?
            };
            x = residual(&x, &m.down.forward(&gu, mode, fuse, tw)?, kernels)?;
        }
        rms_norm(&x, &self.norm, eps, mode, fuse)
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        attn: &Attention,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        bias: Option<&Tensor>,
        causal_offset: Option<usize>,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
        mode: Mode,
    ) -> Result<Tensor> {
        let fuse = self.fused_here(mode);
        let (b, t, _) = x.dims3()?;
        let tw = self.transposed.as_deref();
        let hq = self.cfg.num_attention_heads;
        let hkv = self.cfg.num_key_value_heads;
        let hd = self.cfg.head_dim;
        let eps = self.cfg.rms_norm_eps;
        // Causal attention over the whole sequence, on the CPU in f32: one
        // fused op from the projections' layout (see fused::causal_attention).
        let whole = self.kernels_here()
            && cache.is_none()
            && causal_offset == Some(0)
            && attn.q_norm.is_none()
            && attn.k_norm.is_none();
        if whole {
            let q = attn.q.forward(x, mode, fuse, tw)?;
            let k = attn.k.forward(x, mode, fuse, tw)?;
            let v = attn.v.forward(x, mode, fuse, tw)?;
            let y = fused::causal_attention(&q, &k, &v, cos, sin, (hq, hkv, hd))?;
            return attn.o.forward(&y, mode, fuse, tw);
        }
        let mut q = attn.q.forward(x, mode, fuse, tw)?.reshape((b, t, hq, hd))?;
        let mut k = attn
            .k
            .forward(x, mode, fuse, tw)?
            .reshape((b, t, hkv, hd))?;
        let v = attn
            .v
            .forward(x, mode, fuse, tw)?
            .reshape((b, t, hkv, hd))?;
        if let (Some(qn), Some(kn)) = (&attn.q_norm, &attn.k_norm) {
            q = rms_norm(&q, qn, eps, mode, fuse)?;
            k = rms_norm(&k, kn, eps, mode, fuse)?;
        }
        let q = rope(&q.transpose(1, 2)?.contiguous()?, cos, sin, mode, fuse)?;
        let mut k = rope(&k.transpose(1, 2)?.contiguous()?, cos, sin, mode, fuse)?;
        let mut v = v.transpose(1, 2)?.contiguous()?;
        if let Some(slot) = cache {
            if let Some((pk, pv)) = slot.as_ref() {
                k = Tensor::cat(&[pk, &k], 2)?;
                v = Tensor::cat(&[pv, &v], 2)?;
            }
            *slot = Some((k.clone(), v.clone()));
        }
        let tk = k.dim(2)?;
        // Grouped-query attention without copying K and V: fold the query
        // heads that share a KV head into the sequence dimension.
        let rep = hq / hkv;
        let in_dtype = q.dtype();
        // Half precision attends in f32; f64 (a reference) stays f64.
        let att_dtype = if in_dtype == DType::F64 {
            DType::F64
        } else {
            DType::F32
        };
        let q = q.reshape((b, hkv, rep * t, hd))?.to_dtype(att_dtype)?;
        let k = k.to_dtype(att_dtype)?;
        let v = v.to_dtype(att_dtype)?;
        let scale = 1.0 / (hd as f64).sqrt();
        // The fused softmax scales as it goes (one tensor fewer per layer).
        let scores = q.matmul(&k.t()?)?;
        let fused_scale = fuse && mode == Mode::Train;
        let scores = if fused_scale {
            scores
        } else {
            (scores * scale)?
        };
        let att = scores.reshape((b, hkv, rep, t, tk))?;
        let att = match bias {
            Some(bias) if !(fuse && causal_offset.is_some()) => {
                // (t, tk) or (b, 1, t, tk) → broadcast over heads and groups.
                let bias = if bias.rank() == 2 {
                    bias.to_dtype(att_dtype)?
                } else {
                    bias.unsqueeze(2)?.to_dtype(att_dtype)?
                };
                att.broadcast_add(&bias)?
            }
            _ => att,
        };
        let att = match mode {
            Mode::Train if fuse => fused::scaled_softmax_last_dim(&att, scale, causal_offset)?,
            Mode::Train => candle_nn::ops::softmax(&att, D::Minus1)?,
            Mode::Fast => candle_nn::ops::softmax_last_dim(&att.contiguous()?)?,
        };
        let y = att
            .reshape((b, hkv, rep * t, tk))?
            .matmul(&v)?
            .reshape((b, hq, t, hd))?
            .to_dtype(in_dtype)?
            .transpose(1, 2)?
            .reshape((b, t, hq * hd))?;
        attn.o.forward(&y, mode, fuse, tw)
    }

    /// Logits of the given hidden states (any leading shape).
    pub fn logits(&self, hidden: &Tensor, mode: Mode) -> Result<Tensor> {
        let fuse = self.fused_here(mode);
        let tw = self.transposed.as_deref();
        let logits = match &self.lm_head {
            Some(head) => head.forward(hidden, mode, fuse, tw)?,
            None => Linear::new(self.embed.clone(), None).forward(hidden, mode, fuse, tw)?,
        };
        if logits.dtype() == DType::F64 {
            Ok(logits)
        } else {
            logits.to_dtype(DType::F32)
        }
    }

    /// For hidden rows (n, hidden) and one target id per row (n,): log
    /// p(target), differentiable in `Mode::Train`, and per-row statistics
    /// without gradient. On the CPU in f32 the vocabulary projection and
    /// log-softmax run fused in row chunks (either mode).
    pub fn target_logprobs(
        &self,
        hidden: &Tensor,
        targets: &Tensor,
        mode: Mode,
    ) -> Result<TargetScores> {
        let head = match &self.lm_head {
            None => Some(&self.embed),
            Some(h) if h.lora.is_none() && h.bias.is_none() => Some(&h.weight),
            Some(_) => None,
        };
        if let (true, Some(w)) = (self.fuse && fused::applies(hidden), head) {
            // No gradient in Mode::Fast, even where a LoRA adapter's Vars
            // reach the hidden states (PPO's rollout scores, an unmerged
            // probe): the kernel then prepares nothing for a backward.
            let out = match mode {
                // A frozen head (LoRA's) reads its panels where kept.
                Mode::Train => {
                    fused::token_logprobs_kept(hidden, w, self.transposed.as_deref(), targets)?
                }
                Mode::Fast => {
                    fused::token_logprobs_frozen(hidden, w, self.transposed.as_deref(), targets)?
                }
            };
            let logp = out.narrow(1, 0, 1)?.squeeze(1)?;
            let stats = out.detach();
            let col =
                |c: usize| -> Result<Vec<f32>> { stats.narrow(1, c, 1)?.squeeze(1)?.to_vec1() };
            let argmax = col(2)?;
            let tgt: Vec<u32> = targets.to_vec1()?;
            return Ok(TargetScores {
                logp,
                mean_logit: col(1)?,
                top1: argmax
                    .iter()
                    .zip(&tgt)
                    .map(|(&a, &t)| a as u32 == t)
                    .collect(),
                entropy: col(3)?,
            });
        }
        let logits = self.logits(hidden, mode)?;
        // The normaliser sums 49k terms: in f64, as the fused kernel does.
        let logp_all = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F64)?, D::Minus1)?
            .to_dtype(logits.dtype())?;
        let logp = logp_all
            .gather(&targets.unsqueeze(1)?.contiguous()?, 1)?
            .squeeze(1)?;
        let l = logits.detach();
        let lp = logp_all.detach();
        // Entropy: −Σ p·log p.
        let entropy = (lp.exp()? * &lp)?.sum(D::Minus1)?.neg()?;
        let argmax: Vec<u32> = l.argmax(D::Minus1)?.to_vec1()?;
        let tgt: Vec<u32> = targets.to_vec1()?;
        let f32s = |t: Tensor| -> Result<Vec<f32>> { t.to_dtype(DType::F32)?.to_vec1() };
        Ok(TargetScores {
            logp,
            mean_logit: f32s(l.mean(D::Minus1)?)?,
            top1: argmax.iter().zip(&tgt).map(|(a, t)| a == t).collect(),
            entropy: f32s(entropy)?,
        })
    }

    /// Logits at every position, (batch, seq, vocab).
    pub fn forward(&self, ids: &Tensor, mode: Mode, opts: ForwardOptions) -> Result<Tensor> {
        let h = self.hidden(ids, mode, opts)?;
        self.logits(&h, mode)
    }
}

/// What [`Decoder::target_logprobs`] gives for each target.
pub struct TargetScores {
    /// (n,) log p(target), differentiable in `Mode::Train`.
    pub logp: Tensor,
    /// The mean logit over the vocabulary (TRL's `mean_logits`).
    pub mean_logit: Vec<f32>,
    /// Whether the target is the argmax (ties to the lowest id).
    pub top1: Vec<bool>,
    /// Entropy of the next-token distribution.
    pub entropy: Vec<f32>,
}

/// The residual stream's `x + y`: on the CPU in f32 driftui's add, on the
/// pool's threads (the same bits as candle's, which runs on one).
fn residual(x: &Tensor, y: &Tensor, kernels: bool) -> Result<Tensor> {
    if kernels {
        fused::add(x, y)
    } else {
        x + y
    }
}

/// 0 where a query may look, -inf where it may not: (seq, offset + seq).
pub fn causal_bias(t: usize, offset: usize, device: &Device) -> Result<Tensor> {
    let tk = offset + t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| {
            (0..tk).map(move |j| {
                if j > offset + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (t, tk), device)
}

fn rms_norm(x: &Tensor, w: &Tensor, eps: f64, mode: Mode, fuse: bool) -> Result<Tensor> {
    match mode {
        Mode::Train if fuse => fused::rms_norm(x, w, eps),
        Mode::Train => candle_nn::ops::rms_norm_slow(x, w, eps as f32),
        Mode::Fast => candle_nn::ops::rms_norm(&x.contiguous()?, w, eps as f32),
    }
}

/// Rotary embedding, rotate-half convention (Hugging Face's Llama).
/// `x`: (b, h, t, d); cos/sin: (t, d/2) or (b, t, d/2).
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, mode: Mode, fuse: bool) -> Result<Tensor> {
    match mode {
        Mode::Fast => candle_nn::rotary_emb::rope(x, cos, sin),
        Mode::Train if fuse => fused::rope(x, cos, sin),
        Mode::Train => {
            let d = x.dim(D::Minus1)?;
            let (cos, sin) = if cos.rank() == 2 {
                (cos.unsqueeze(0)?, sin.unsqueeze(0)?)
            } else {
                (cos.clone(), sin.clone())
            };
            // (b|1, t, d/2) → (b|1, 1, t, d)
            let cos = Tensor::cat(&[&cos, &cos], D::Minus1)?.unsqueeze(1)?;
            let sin = Tensor::cat(&[&sin, &sin], D::Minus1)?.unsqueeze(1)?;
            let x1 = x.narrow(D::Minus1, 0, d / 2)?;
            let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
            let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
            x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
        }
    }
}

impl Module for Decoder {
    /// Logits at every position, fast mode, no cache.
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        Decoder::forward(self, ids, Mode::Fast, ForwardOptions::default())
    }
}
