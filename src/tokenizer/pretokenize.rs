//! Byte-level BPE pre-tokenizers: the word splits of llama.cpp's `llm_tokenizer_bpe`, selected by
//! `tokenizer.ggml.pre`, reproduced exactly.
//!
//! llama.cpp runs a list of regexes one after the other, each splitting the pieces the previous one
//! left. A few regexes have hand-written splitters in llama.cpp's `unicode.cpp` (GPT-2, Llama 3,
//! Qwen 2, Qwen 3.5, digit grouping, newline runs); those are ported here step by step, quirks
//! included. Every other regex goes through llama.cpp's "collapsed" scheme: each code point that is
//! not ASCII is replaced by one marker for its Unicode category, and `\p{..}` classes in the regex
//! become the matching marker plus ASCII ranges. We run the same rewrite and match it with
//! `fancy_regex` (for the look-aheads), so category decisions come from llama.cpp's own Unicode
//! table rather than from the Unicode version Rust ships.

use super::unicode::{self, Flags, ACCENT_MARK, LETTER, NUMBER, PUNCTUATION, SYMBOL};
use super::TokenizerError;

/// llama.cpp's `LLAMA_VOCAB_PRE_TYPE_*` values that this crate supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum PreType {
    Default,
    Llama3,
    Jais2,
    Dbrx,
    Smaug,
    DeepseekLlm,
    DeepseekCoder,
    Deepseek3Llm,
    HunyuanDense,
    JoyaiLlm,
    HyV4,
    Spark25,
    Youtu,
    Falcon,
    Mpt,
    Starcoder,
    Gpt2,
    Refact,
    CommandR,
    Stablelm2,
    Qwen2,
    Qwen35,
    Olmo,
    Poro,
    Chatglm4,
    Viking,
    Jais,
    Tekken,
    Smollm,
    Codeshell,
    Bloom,
    Gpt3Finnish,
    Exaone,
    ExaoneMoe,
    Chameleon,
    Minerva,
    Gpt4o,
    MinimaxM2,
    GraniteEmbMulti,
    TinyAya,
    Trillion,
    GraniteDocling,
    Bailingmoe,
    SeedCoder,
    Hunyuan,
    Ufakzeka,
    Grok2,
    Afmoe,
    Laguna,
    SolarOpen,
    Mellum2,
    Minicpm5,
}

/// What a `tokenizer.ggml.pre` name selects, and the vocabulary flags llama.cpp changes with it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PreConfig {
    pub pre_type: PreType,
    /// `clean_up_tokenization_spaces` for detokenizing (BPE default: true).
    pub clean_spaces: bool,
    /// A pre-tokenized word that is itself a token is emitted whole, without merges.
    pub ignore_merges: bool,
    /// Default for `add_bos` before the metadata key is read (BPE default: false).
    pub add_bos: bool,
    /// Default for `add_sep` before the metadata key is read.
    pub add_sep: bool,
    /// The pre-tokenizer drops the default BOS id (ChatGLM).
    pub no_default_bos: bool,
}

/// Pre-tokenizer names llama.cpp knows but this crate does not implement.
const UNSUPPORTED_PRE: &[&str] = &[
    "gemma4",
    "granite-embed-multi-311m",
    "sarvam-moe",
    "whitespace",
    "superbpe",
    "kimi-k2",
];

/// Maps `tokenizer.ggml.pre` to its pre-tokenizer, as `llama_vocab::impl::load` does for BPE
/// vocabularies. A missing or empty name means `default`.
pub(crate) fn pre_config(name: &str) -> Result<PreConfig, TokenizerError> {
    use PreType::*;
    let mut c = PreConfig {
        pre_type: Default,
        clean_spaces: true,
        ignore_merges: false,
        add_bos: false,
        add_sep: false,
        no_default_bos: false,
    };
    let (t, clean, ignore_merges, add_bos) = match name {
        "" | "default" => (Default, true, false, false),
        "minicpm5" => (Minicpm5, true, true, false),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => (Llama3, true, true, true),
        "deepseek-llm" => (DeepseekLlm, false, false, false),
        "deepseek-coder" => (DeepseekCoder, false, false, false),
        "deepseek-v3" => (Deepseek3Llm, false, false, false),
        "spark2_5" => (Spark25, false, false, false),
        "youtu" => (Youtu, false, true, false),
        "falcon" => (Falcon, true, false, false),
        "mpt" => (Mpt, true, false, false),
        "starcoder" => (Starcoder, true, false, false),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "a.x-4.0" | "mellum" | "modern-bert" | "exaone4" => (Gpt2, true, false, false),
        "jais-2" => (Jais2, true, false, false),
        "jina-v1-en" | "jina-v2-code" | "roberta-bpe" => {
            c.add_sep = true;
            (Gpt2, true, false, false)
        }
        "refact" => (Refact, true, false, false),
        "command-r" => (CommandR, false, false, false),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" => (Qwen2, false, false, false),
        "megrez" => (Qwen2, true, false, false),
        "qwen35" => (Qwen35, false, false, false),
        "stablelm2" => (Stablelm2, true, false, false),
        "olmo" => (Olmo, true, false, false),
        "dbrx" => (Dbrx, true, false, false),
        "smaug-bpe" => (Smaug, true, false, false),
        "poro-chat" => (Poro, false, false, false),
        "glm4" | "chatglm-bpe" => {
            c.no_default_bos = true;
            (Chatglm4, true, false, false)
        }
        "viking" => (Viking, false, false, false),
        "jais" => (Jais, true, false, false),
        "tekken" => (Tekken, false, true, true),
        "smollm" => (Smollm, false, false, false),
        "codeshell" => (Codeshell, true, false, false),
        "bloom" => (Bloom, true, false, false),
        "gpt3-finnish" => (Gpt3Finnish, true, false, false),
        "exaone" => (Exaone, true, false, false),
        "exaone-moe" => (ExaoneMoe, true, false, false),
        "chameleon" => (Chameleon, false, false, true),
        "minerva-7b" => (Minerva, true, false, false),
        "gpt-4o" | "llama4" | "kanana2" | "talkie" => (Gpt4o, false, false, false),
        "granite-embed-multi-97m" => (GraniteEmbMulti, false, true, false),
        "tiny_aya" | "cohere2moe" => (TinyAya, false, false, false),
        "trillion" => (Trillion, false, false, false),
        "granite-docling" => (GraniteDocling, false, false, false),
        "bailingmoe" | "bailingmoe2" | "llada-moe" => (Bailingmoe, false, false, false),
        "seed-coder" => (SeedCoder, false, false, false),
        "hunyuan" => (Hunyuan, false, false, false),
        "hunyuan-dense" => (HunyuanDense, false, false, false),
        "hy_v4" => (HyV4, false, false, false),
        "joyai-llm" => (JoyaiLlm, false, false, false),
        "ufakzeka" => (Ufakzeka, false, false, false),
        "grok-2" => (Grok2, false, false, false),
        "afmoe" => (Afmoe, false, false, false),
        "laguna" => (Laguna, false, false, false),
        "minimax-m2" => (MinimaxM2, false, false, false),
        "solar-open" => (SolarOpen, false, false, false),
        "mellum2" => (Mellum2, true, false, false),
        other if UNSUPPORTED_PRE.contains(&other) => {
            return Err(TokenizerError::UnsupportedPreTokenizer(other.to_string()))
        }
        other => return Err(TokenizerError::UnknownPreTokenizer(other.to_string())),
    };
    c.pre_type = t;
    c.clean_spaces = clean;
    c.ignore_merges = ignore_merges;
    c.add_bos = add_bos;
    Ok(c)
}

/// The regexes llama.cpp's `llm_tokenizer_bpe` runs for a pre-tokenizer, in order.
pub(crate) fn regexes(t: PreType) -> &'static [&'static str] {
    use PreType::*;
    match t {
        Llama3 => RE_LLAMA3,
        Jais2 => RE_JAIS2,
        Dbrx | Smaug => RE_DBRX,
        DeepseekLlm => RE_DEEPSEEK_LLM,
        Deepseek3Llm | HunyuanDense | JoyaiLlm | HyV4 => RE_DEEPSEEK3_LLM,
        Spark25 => RE_SPARK2_5,
        Youtu => RE_YOUTU,
        DeepseekCoder => RE_DEEPSEEK_CODER,
        Falcon => RE_FALCON,
        Starcoder | Refact | CommandR | Smollm | Codeshell | Exaone | Minerva | Mellum2 => {
            RE_STARCODER
        }
        Gpt2 | Mpt | Olmo | Jais | Trillion | GraniteDocling => RE_GPT2,
        Stablelm2 | Qwen2 | Hunyuan | SolarOpen => RE_STABLELM2,
        Qwen35 => RE_QWEN35,
        Poro | Bloom | Gpt3Finnish => RE_PORO,
        Chatglm4 => RE_CHATGLM4,
        Viking => RE_VIKING,
        Tekken => RE_TEKKEN,
        Chameleon => RE_CHAMELEON,
        Gpt4o | MinimaxM2 => RE_GPT4O,
        GraniteEmbMulti => RE_GRANITE_EMB_MULTI,
        TinyAya => RE_TINY_AYA,
        Bailingmoe => RE_BAILINGMOE,
        SeedCoder => RE_SEED_CODER,
        Ufakzeka => RE_UFAKZEKA,
        Grok2 => RE_GROK_2,
        Afmoe => RE_AFMOE,
        Laguna => RE_LAGUNA,
        ExaoneMoe => RE_EXAONE_MOE,
        Minicpm5 => RE_MINICPM5,
        Default => RE_DEFAULT,
    }
}

// The regex lists below are copied verbatim from llama.cpp `src/llama-vocab.cpp`
// (`llm_tokenizer_bpe::llm_tokenizer_bpe`). They must stay byte-identical: llama.cpp picks its
// hand-written splitters by comparing the regex text.

/// `LLAMA3`.
const RE_LLAMA3: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
/// `JAIS2`.
const RE_JAIS2: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}",
];
/// `DBRX`, `SMAUG`.
const RE_DBRX: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
/// `DEEPSEEK_LLM`.
const RE_DEEPSEEK_LLM: &[&str] = &[
    "[\r\n]",
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
    "\\s+$",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}+",
];
/// `DEEPSEEK3_LLM`, `HUNYUAN_DENSE`, `JOYAI_LLM`, `HY_V4`.
const RE_DEEPSEEK3_LLM: &[&str] = &[
    "\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
];
/// `SPARK2_5`.
const RE_SPARK2_5: &[&str] = &[
    "\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+",
    "\\p{N}",
];
/// `YOUTU`.
const RE_YOUTU: &[&str] = &[
    "[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+",
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
/// `DEEPSEEK_CODER`.
const RE_DEEPSEEK_CODER: &[&str] = &[
    "[\r\n]",
    "\\s?\\p{L}+",
    "\\s?\\p{P}+",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}",
];
/// `FALCON`.
const RE_FALCON: &[&str] = &[
    "[\\p{P}\\$\\+<=>\\^~\\|`]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    "[0-9][0-9][0-9]",
];
/// `STARCODER`, `REFACT`, `COMMAND_R`, `SMOLLM`, `CODESHELL`, `EXAONE`, `MINERVA`, `MELLUM2`.
const RE_STARCODER: &[&str] = &[
    "\\p{N}",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
];
/// `GPT2`, `MPT`, `OLMO`, `JAIS`, `TRILLION`, `GRANITE_DOCLING`.
const RE_GPT2: &[&str] =
    &["'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"];
/// `STABLELM2`, `QWEN2`, `HUNYUAN`, `SOLAR_OPEN`.
const RE_STABLELM2: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
/// `QWEN35`.
const RE_QWEN35: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
/// `PORO`, `BLOOM`, `GPT3_FINNISH`.
const RE_PORO: &[&str] = &[" ?[^(\\s|.,!?…。，、।۔،)]+"];
/// `CHATGLM4`.
const RE_CHATGLM4: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
/// `VIKING`.
const RE_VIKING: &[&str] = &[" ?[^(\\s|.,!?…。，、।۔،)]+", "\\p{N}"];
/// `TEKKEN`.
const RE_TEKKEN: &[&str] = &[
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
/// `CHAMELEON`.
const RE_CHAMELEON: &[&str] = &[
    "<sentinel:[0-9]+>",
    "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
    "([\\t\\n]|    |  )",
    "\\p{N}",
    "[\\p{P}!-/:-@\\[-`{-~]",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
];
/// `GPT4O`, `MINIMAX_M2`.
const RE_GPT4O: &[&str] = &[
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
/// `GRANITE_EMB_MULTI`.
const RE_GRANITE_EMB_MULTI: &[&str] = &[
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))*((?=[\\p{L}\\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))+((?=[\\p{L}\\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
/// `TINY_AYA`.
const RE_TINY_AYA: &[&str] = &[
    "\\d{1,3}(?=(?:\\d{3})*\\b)",
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
/// `BAILINGMOE`.
const RE_BAILINGMOE: &[&str] = &[
    "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
];
/// `SEED_CODER`.
const RE_SEED_CODER: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
/// `UFAKZEKA`.
const RE_UFAKZEKA: &[&str] = &[
    "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
/// `GROK_2`.
const RE_GROK_2: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
/// `AFMOE`.
const RE_AFMOE: &[&str] = &[
    "\\p{AFMoE_digits}",
    "[一-鿿㐀-䶿豈-﫿぀-ゟ゠-ヿ･-ﾟ⼀-⿟เ-๿຀-໿ក-៿က-႟ꩠ-ꩿꧠ-꧿가-힯ᄀ-ᇿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
/// `LAGUNA`.
const RE_LAGUNA: &[&str] = &[
    "[^\\n]+|[\\n]+",
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
/// `EXAONE_MOE`.
const RE_EXAONE_MOE: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
];
/// `MINICPM5`.
const RE_MINICPM5: &[&str] = &[
    "\\p{N}{1,3}",
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
/// `DEFAULT`.
const RE_DEFAULT: &[&str] = &[
    "[\\p{P}\\$\\+<=>\\^~\\|]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    "\\p{N}+",
    "[0-9][0-9][0-9]",
];

// The exact regex texts llama.cpp's `unicode_regex_split_custom` recognizes.
const CUSTOM_GPT2: &str =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const CUSTOM_LLAMA3_A: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const CUSTOM_LLAMA3_B: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const CUSTOM_QWEN2: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const CUSTOM_QWEN35: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const CUSTOM_AFMOE: &str = "\\p{AFMoE_digits}";
const CUSTOM_TINY_AYA_DIGITS: &str = "\\d{1,3}(?=(?:\\d{3})*\\b)";
const CUSTOM_NEWLINES: &str = "[^\\n]+|[\\n]+";

/// The `\p{..}` classes llama.cpp's collapsed scheme knows, with their category.
const UCAT: &[(&str, u8)] = &[
    ("\\p{N}", NUMBER),
    ("\\p{L}", LETTER),
    ("\\p{P}", PUNCTUATION),
    ("\\p{M}", ACCENT_MARK),
    ("\\p{S}", SYMBOL),
    ("\\p{Lu}", LETTER),
    ("\\p{Ll}", LETTER),
    ("\\p{Lt}", LETTER),
    ("\\p{Lm}", LETTER),
    ("\\p{Lo}", LETTER),
];

/// The marker a collapsed code point of this category becomes (llama.cpp's `k_ucat_cpt`), and the
/// ASCII members of the category (`k_ucat_map`).
fn ucat_marker(cat: u8) -> Option<(char, &'static str)> {
    Some(match cat {
        NUMBER => ('\u{D1}', "0-9"),
        LETTER => ('\u{D2}', "A-Za-z"),
        PUNCTUATION => ('\u{D3}', "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}"),
        ACCENT_MARK => ('\u{D4}', ""),
        SYMBOL => ('\u{D5}', "\\$\\+<->^`\\|\\~"),
        _ => return None,
    })
}

#[derive(Debug)]
enum Step {
    Gpt2,
    /// Llama 3 (`max_digits` 3), Qwen 2 (1) and Qwen 3.5 (1, marks join letters).
    Llama3Like {
        max_digits: usize,
        marks: bool,
    },
    AfmoeDigits,
    Newlines,
    /// A general regex over the collapsed text.
    Collapsed(fancy_regex::Regex),
    /// A general regex over the code points (non-ASCII whitespace shown as U+000B).
    Plain(fancy_regex::Regex),
}

/// A compiled pre-tokenizer: splits text into words, GPT-2 byte-encoded.
#[derive(Debug)]
pub(crate) struct PreTokenizer {
    steps: Vec<Step>,
}

fn uses_categories(re: &str) -> bool {
    UCAT.iter().any(|(pat, _)| re.contains(pat))
}

/// llama.cpp's rewrite of a regex for the collapsed text (`unicode_regex_split`).
fn collapse_regex(re: &str) -> Result<String, TokenizerError> {
    if !re.is_ascii() {
        return Err(TokenizerError::Invalid(format!(
            "pre-tokenizer regex mixes Unicode categories and non-ASCII characters: {re}"
        )));
    }
    let b = re.as_bytes();
    let mut out = String::with_capacity(re.len() * 2);
    let mut inside = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'[' && (i == 0 || b[i - 1] != b'\\') {
            out.push('[');
            inside = true;
            i += 1;
            continue;
        }
        if inside && c == b']' && b[i - 1] != b'\\' {
            out.push(']');
            inside = false;
            i += 1;
            continue;
        }
        if c == b'\\' && i + 3 < b.len() && b[i + 1] == b'p' && b[i + 2] == b'{' {
            if let Some(rel) = re[i + 3..].find('}') {
                let close = i + 3 + rel;
                if close <= i + 10 {
                    let pat = &re[i..=close];
                    if let Some(&(_, cat)) = UCAT.iter().find(|(p, _)| *p == pat) {
                        if let Some((marker, ascii)) = ucat_marker(cat) {
                            if !inside {
                                out.push('[');
                            }
                            out.push(marker);
                            out.push_str(ascii);
                            if !inside {
                                out.push(']');
                            }
                            i = close + 1;
                            continue;
                        }
                    }
                }
            }
        }
        out.push(c as char);
        i += 1;
    }
    Ok(out)
}

fn compile(pattern: &str) -> Result<fancy_regex::Regex, TokenizerError> {
    fancy_regex::RegexBuilder::new(pattern)
        .backtrack_limit(10_000_000)
        .build()
        .map_err(|e| TokenizerError::Invalid(format!("pre-tokenizer regex {pattern:?}: {e}")))
}

impl PreTokenizer {
    pub(crate) fn new(t: PreType) -> Result<Self, TokenizerError> {
        let mut steps = Vec::new();
        for &re in regexes(t) {
            let step = match re {
                CUSTOM_GPT2 => Step::Gpt2,
                CUSTOM_LLAMA3_A | CUSTOM_LLAMA3_B => Step::Llama3Like {
                    max_digits: 3,
                    marks: false,
                },
                CUSTOM_QWEN2 => Step::Llama3Like {
                    max_digits: 1,
                    marks: false,
                },
                CUSTOM_QWEN35 => Step::Llama3Like {
                    max_digits: 1,
                    marks: true,
                },
                CUSTOM_AFMOE | CUSTOM_TINY_AYA_DIGITS => Step::AfmoeDigits,
                CUSTOM_NEWLINES => Step::Newlines,
                _ if uses_categories(re) => Step::Collapsed(compile(&collapse_regex(re)?)?),
                _ => Step::Plain(compile(re)?),
            };
            steps.push(step);
        }
        Ok(PreTokenizer { steps })
    }

    /// Splits `text` into words (llama.cpp's `unicode_regex_split`), each word GPT-2 byte-encoded
    /// when `byte_encode` is set.
    pub(crate) fn split(
        &self,
        text: &str,
        byte_encode: bool,
    ) -> Result<Vec<String>, TokenizerError> {
        let cpts: Vec<char> = text.chars().collect();
        let flags: Vec<Flags> = cpts.iter().map(|&c| unicode::flags(c)).collect();
        let mut offsets: Vec<usize> = vec![cpts.len()];
        let mut collapsed: Option<Haystack> = None;
        let mut plain: Option<Haystack> = None;
        for step in &self.steps {
            let mut out = Vec::with_capacity(offsets.len());
            match step {
                Step::Gpt2 => split_gpt2(&cpts, &flags, &offsets, &mut out),
                Step::Llama3Like { max_digits, marks } => {
                    split_llama3(&cpts, &flags, &offsets, *max_digits, *marks, &mut out)
                }
                Step::AfmoeDigits => split_afmoe_digits(&flags, &offsets, &mut out),
                Step::Newlines => split_newlines(&cpts, &offsets, &mut out),
                Step::Collapsed(re) => {
                    let hay = collapsed.get_or_insert_with(|| Haystack::collapsed(&cpts, &flags));
                    hay.split(re, &offsets, &mut out)?;
                }
                Step::Plain(re) => {
                    let hay = plain.get_or_insert_with(|| Haystack::plain(&cpts, &flags));
                    hay.split(re, &offsets, &mut out)?;
                }
            }
            offsets = out;
        }
        let mut words = Vec::with_capacity(offsets.len());
        let mut start = 0;
        for len in offsets {
            let word = &cpts[start..start + len];
            start += len;
            let mut s = String::with_capacity(len * 2);
            if byte_encode {
                let mut buf = [0u8; 4];
                for &c in word {
                    for &b in c.encode_utf8(&mut buf).as_bytes() {
                        s.push(unicode::byte_to_char(b));
                    }
                }
            } else {
                s.extend(word.iter());
            }
            words.push(s);
        }
        Ok(words)
    }
}

/// Text prepared for a general regex, one `char` per code point, with the byte offset of each
/// code point so that matches map back to code point positions.
struct Haystack {
    text: String,
    /// Byte offset of code point `i`; one extra entry for the end.
    offsets: Vec<usize>,
}

impl Haystack {
    /// llama.cpp's `text_collapsed`: ASCII stays, whitespace becomes U+000B, every other code
    /// point becomes its category marker (or U+00D0).
    fn collapsed(cpts: &[char], flags: &[Flags]) -> Self {
        Self::build(cpts.iter().zip(flags).map(|(&c, &f)| {
            if (c as u32) < 128 {
                c
            } else if f.is_whitespace() {
                '\u{0B}'
            } else {
                ucat_marker(f.category()).map_or('\u{D0}', |(m, _)| m)
            }
        }))
    }

    /// The code points as they are, except non-ASCII whitespace, which becomes U+000B (llama.cpp's
    /// `std::wregex` path).
    fn plain(cpts: &[char], flags: &[Flags]) -> Self {
        Self::build(cpts.iter().zip(flags).map(|(&c, &f)| {
            if (c as u32) > 0x7F && f.is_whitespace() {
                '\u{0B}'
            } else {
                c
            }
        }))
    }

    fn build(chars: impl Iterator<Item = char>) -> Self {
        let mut text = String::new();
        let mut offsets = Vec::new();
        for c in chars {
            offsets.push(text.len());
            text.push(c);
        }
        offsets.push(text.len());
        Haystack { text, offsets }
    }

    fn cpt_index(&self, byte: usize) -> usize {
        self.offsets.partition_point(|&o| o < byte)
    }

    /// llama.cpp's `unicode_regex_split_stl`: within each piece, every match and every gap between
    /// matches becomes a piece.
    fn split(
        &self,
        re: &fancy_regex::Regex,
        offsets: &[usize],
        out: &mut Vec<usize>,
    ) -> Result<(), TokenizerError> {
        let mut start = 0;
        for &len in offsets {
            let base = self.offsets[start];
            let hay = &self.text[base..self.offsets[start + len]];
            let mut prev = start;
            for m in re.find_iter(hay) {
                let m = m.map_err(|e| TokenizerError::Invalid(format!("pre-tokenizer: {e}")))?;
                if m.start() == m.end() {
                    continue;
                }
                let ms = self.cpt_index(base + m.start());
                let me = self.cpt_index(base + m.end());
                if ms > prev {
                    out.push(ms - prev);
                }
                out.push(me - ms);
                prev = me;
            }
            if prev < start + len {
                out.push(start + len - prev);
            }
            start += len;
        }
        Ok(())
    }
}

/// Shared state of llama.cpp's hand-written splitters for one piece `[ini, end)`.
struct Piece<'a> {
    cpts: &'a [char],
    flags: &'a [Flags],
    ini: usize,
    end: usize,
    prev_end: usize,
    out: &'a mut Vec<usize>,
}

/// What llama.cpp's splitters read past the end of a piece.
const OUT_OF_RANGE: u32 = 0xFFFF_FFFF;

impl Piece<'_> {
    fn cpt(&self, pos: usize) -> u32 {
        if self.ini <= pos && pos < self.end {
            self.cpts[pos] as u32
        } else {
            OUT_OF_RANGE
        }
    }
    fn flags(&self, pos: usize) -> Flags {
        if self.ini <= pos && pos < self.end {
            self.flags[pos]
        } else {
            Flags::default()
        }
    }
    /// Ends the current word at `end`; returns its length (0 adds nothing).
    fn add(&mut self, end: usize) -> usize {
        let len = end - self.prev_end;
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
        len
    }
}

fn lower(c: u32) -> u32 {
    // Only ASCII letters lower-case to the ASCII letters the contraction rules look for
    // (llama.cpp's table maps U+0130 to 'i' and U+212A to 'k', neither of which matters here).
    if (b'A' as u32..=b'Z' as u32).contains(&c) {
        c + 32
    } else {
        c
    }
}

const fn ch(c: char) -> u32 {
    c as u32
}

/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)` as llama.cpp's
/// `unicode_regex_split_custom_gpt2` implements it.
fn split_gpt2(cpts: &[char], flags: &[Flags], offsets: &[usize], out: &mut Vec<usize>) {
    let mut start = 0;
    for &len in offsets {
        let (ini, end) = (start, start + len);
        start = end;
        let mut p = Piece {
            cpts,
            flags,
            ini,
            end,
            prev_end: ini,
            out,
        };
        let mut pos = ini;
        while pos < end {
            let cpt = p.cpt(pos);
            let f = p.flags(pos);
            if cpt == ch('\'') && pos + 1 < end {
                let next = p.cpt(pos + 1);
                if next == ch('s') || next == ch('t') || next == ch('m') || next == ch('d') {
                    pos += p.add(pos + 2);
                    continue;
                }
                if pos + 2 < end {
                    let next2 = p.cpt(pos + 2);
                    if (next == ch('r') && next2 == ch('e'))
                        || (next == ch('v') && next2 == ch('e'))
                        || (next == ch('l') && next2 == ch('l'))
                    {
                        pos += p.add(pos + 3);
                        continue;
                    }
                }
            }
            let space = cpt == ch(' ');
            let mut f2 = if space { p.flags(pos + 1) } else { f };
            if f2.is_letter() {
                pos += space as usize;
                while f2.is_letter() {
                    pos += 1;
                    f2 = p.flags(pos);
                }
                p.add(pos);
                continue;
            }
            if f2.is_number() {
                pos += space as usize;
                while f2.is_number() {
                    pos += 1;
                    f2 = p.flags(pos);
                }
                p.add(pos);
                continue;
            }
            if !(f2.is_whitespace() || f2.is_letter() || f2.is_number()) && f2.is_defined() {
                pos += space as usize;
                while !(f2.is_whitespace() || f2.is_letter() || f2.is_number()) && f2.is_defined() {
                    pos += 1;
                    f2 = p.flags(pos);
                }
                p.add(pos);
                continue;
            }
            let mut n_ws = 0;
            while p.flags(pos + n_ws).is_whitespace() {
                n_ws += 1;
            }
            if n_ws > 1 && p.cpt(pos + n_ws) != OUT_OF_RANGE {
                pos += n_ws - 1;
                p.add(pos);
                continue;
            }
            if n_ws > 0 {
                pos += n_ws;
                p.add(pos);
                continue;
            }
            pos += 1;
            p.add(pos);
        }
    }
}

/// llama.cpp's `unicode_regex_split_custom_llama3` (`max_digits` 3), `..._qwen2` (1) and
/// `..._qwen35` (1, with `marks`: letters runs also take combining marks).
fn split_llama3(
    cpts: &[char],
    flags: &[Flags],
    offsets: &[usize],
    max_digits: usize,
    marks: bool,
    out: &mut Vec<usize>,
) {
    let letterish = |f: Flags| f.is_letter() || (marks && f.is_accent_mark());
    let mut start = 0;
    for &len in offsets {
        let (ini, end) = (start, start + len);
        start = end;
        let mut p = Piece {
            cpts,
            flags,
            ini,
            end,
            prev_end: ini,
            out,
        };
        let mut pos = ini;
        while pos < end {
            let cpt = p.cpt(pos);
            let f = p.flags(pos);
            // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            if cpt == ch('\'') && pos + 1 < end {
                let next = lower(p.cpt(pos + 1));
                if next == ch('s') || next == ch('t') || next == ch('m') || next == ch('d') {
                    pos += p.add(pos + 2);
                    continue;
                }
                if pos + 2 < end {
                    let next2 = lower(p.cpt(pos + 2));
                    if (next == ch('r') && next2 == ch('e'))
                        || (next == ch('v') && next2 == ch('e'))
                        || (next == ch('l') && next2 == ch('l'))
                    {
                        pos += p.add(pos + 3);
                        continue;
                    }
                }
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(cpt == ch('\r') || cpt == ch('\n') || f.is_number())
                && (letterish(f) || letterish(p.flags(pos + 1)))
            {
                pos += 1;
                while letterish(p.flags(pos)) {
                    pos += 1;
                }
                p.add(pos);
                continue;
            }
            // \p{N}{1,3} or \p{N}
            if f.is_number() {
                if max_digits == 1 {
                    pos += 1;
                    p.add(pos);
                } else {
                    let mut ini_d = pos;
                    while p.flags(pos).is_number() {
                        pos += 1;
                        if pos - ini_d >= max_digits {
                            p.add(pos);
                            ini_d = pos;
                        }
                    }
                    p.add(pos);
                }
                continue;
            }
            // <space>?[^\s\p{L}\p{N}]+[\r\n]*
            let space = cpt == ch(' ');
            let mut f2 = if space { p.flags(pos + 1) } else { f };
            let other = |f: Flags| !(f.is_whitespace() || letterish(f) || f.is_number());
            if other(f2) && f.is_defined() {
                pos += space as usize;
                while other(f2) && f2.is_defined() {
                    pos += 1;
                    f2 = p.flags(pos);
                }
                let mut c2 = p.cpt(pos);
                while c2 == ch('\r') || c2 == ch('\n') {
                    pos += 1;
                    c2 = p.cpt(pos);
                }
                p.add(pos);
                continue;
            }
            let mut n_ws = 0;
            let mut last_rn = 0;
            while p.flags(pos + n_ws).is_whitespace() {
                let c2 = p.cpt(pos + n_ws);
                if c2 == ch('\r') || c2 == ch('\n') {
                    last_rn = pos + n_ws + 1;
                }
                n_ws += 1;
            }
            // \s*[\r\n]+
            if last_rn > 0 {
                pos = last_rn;
                p.add(pos);
                continue;
            }
            // \s+(?!\S)
            if n_ws > 1 && p.cpt(pos + n_ws) != OUT_OF_RANGE {
                pos += n_ws - 1;
                p.add(pos);
                continue;
            }
            // \s+
            if n_ws > 0 {
                pos += n_ws;
                p.add(pos);
                continue;
            }
            pos += 1;
            p.add(pos);
        }
    }
}

/// llama.cpp's `unicode_regex_split_custom_afmoe`: digit runs split into groups of three from
/// the right; text before a digit run joins its first group.
fn split_afmoe_digits(flags: &[Flags], offsets: &[usize], out: &mut Vec<usize>) {
    let mut start = 0;
    for &len in offsets {
        let (ini, end) = (start, start + len);
        start = end;
        let mut p = Piece {
            cpts: &[],
            flags,
            ini,
            end,
            prev_end: ini,
            out,
        };
        let mut pos = ini;
        while pos < end {
            if p.flags(pos).is_number() {
                let digit_start = pos;
                let mut count = 0;
                while p.flags(pos).is_number() && pos < end {
                    count += 1;
                    pos += 1;
                }
                let rem = count % 3;
                let mut cur = digit_start;
                if rem > 0 {
                    p.add(cur + rem);
                    cur += rem;
                }
                while cur < digit_start + count {
                    p.add(cur + 3);
                    cur += 3;
                }
                continue;
            }
            pos += 1;
        }
        if p.prev_end < end {
            p.add(end);
        }
    }
}

/// `[^\n]+|[\n]+`: runs of newlines and runs of everything else.
fn split_newlines(cpts: &[char], offsets: &[usize], out: &mut Vec<usize>) {
    let mut start = 0;
    for &len in offsets {
        let end = start + len;
        let mut pos = start;
        while pos < end {
            let nl = cpts[pos] == '\n';
            let run = pos;
            while pos < end && (cpts[pos] == '\n') == nl {
                pos += 1;
            }
            out.push(pos - run);
        }
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(pre: &str, text: &str) -> Vec<String> {
        let cfg = pre_config(pre).unwrap();
        PreTokenizer::new(cfg.pre_type)
            .unwrap()
            .split(text, false)
            .unwrap()
    }

    #[test]
    fn every_supported_regex_compiles() {
        use PreType::*;
        for t in [
            Default,
            Llama3,
            Jais2,
            Dbrx,
            DeepseekLlm,
            DeepseekCoder,
            Deepseek3Llm,
            Spark25,
            Youtu,
            Falcon,
            Starcoder,
            Gpt2,
            Qwen2,
            Qwen35,
            Poro,
            Chatglm4,
            Viking,
            Tekken,
            Chameleon,
            Gpt4o,
            GraniteEmbMulti,
            TinyAya,
            Bailingmoe,
            SeedCoder,
            Ufakzeka,
            Grok2,
            Afmoe,
            Laguna,
            ExaoneMoe,
            Minicpm5,
        ] {
            let p = PreTokenizer::new(t).unwrap_or_else(|e| panic!("{t:?}: {e}"));
            p.split("Hello, World! It's 12345 日本語  \n\t x", true)
                .unwrap_or_else(|e| panic!("{t:?}: {e}"));
        }
    }

    #[test]
    fn unknown_and_unsupported_names_are_errors() {
        assert!(matches!(
            pre_config("no-such-pre"),
            Err(TokenizerError::UnknownPreTokenizer(_))
        ));
        assert!(matches!(
            pre_config("kimi-k2"),
            Err(TokenizerError::UnsupportedPreTokenizer(_))
        ));
    }

    #[test]
    fn gpt2_splits() {
        assert_eq!(
            words("gpt-2", "Hello world's  end 123"),
            ["Hello", " world", "'s", " ", " end", " 123"]
        );
    }

    #[test]
    fn llama3_splits_digits_in_threes() {
        assert_eq!(
            words("llama-bpe", "x 1234567"),
            ["x", " ", "123", "456", "7"]
        );
        assert_eq!(words("llama-bpe", "I'M ok\n\n"), ["I", "'M", " ok", "\n\n"]);
    }

    #[test]
    fn qwen2_splits_single_digits() {
        assert_eq!(words("qwen2", "ab 12"), ["ab", " ", "1", "2"]);
    }

    #[test]
    fn smollm_isolates_digits() {
        assert_eq!(words("smollm", "a 123b"), ["a", " ", "1", "2", "3", "b"]);
    }

    #[test]
    fn collapsed_regex_rewrite() {
        assert_eq!(collapse_regex("\\p{N}+").unwrap(), "[\u{D1}0-9]+");
        assert_eq!(
            collapse_regex("[^\\s\\p{L}]").unwrap(),
            "[^\\s\u{D2}A-Za-z]"
        );
        assert!(collapse_regex("\\p{L}é").is_err());
    }

    #[test]
    fn afmoe_digit_groups() {
        assert_eq!(words("tiny_aya", "ab1234567"), ["ab", "1", "234", "567"]);
    }
}
