//! Models: our own decoder, LoRA, sequence log-probabilities, and loading
//! from the sources a recipe names.

pub mod blas;
pub mod builtin;
pub mod config;
pub mod decoder;
pub mod export;
pub mod fused;
pub mod generate;
pub mod gguf;
pub mod hub;
pub mod lora;
pub mod reward;
pub mod score;
pub mod source;
pub mod streamed;
pub mod weights;

pub use config::{Architecture, ModelConfig};
pub use decoder::{Decoder, ForwardOptions, KvCache, Mode};
pub use lora::merge as lora_merge;
pub use score::{seq_logps, SeqLogps};
pub use source::{load_model, LoadOptions, LoadedModel};
pub use weights::TensorMap;
