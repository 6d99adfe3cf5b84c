//! `ppgn onnx check` and `ppgn onnx eval`: a network brought as an ONNX
//! file (or its sidecar), checked and run.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use ppgn::run::onnx::{self, EvalSpec};

#[derive(Subcommand, Debug)]
pub enum OnnxCommand {
    /// An ONNX file's (or sidecar's) ops, input gradient vs finite differences, and speed.
    Check(CheckArgs),
    /// Run an ONNX file (or sidecar) on an .npy batch: output and input gradient.
    Eval(EvalArgs),
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// FILE.onnx, or FILE.toml: a sidecar (docs/onnx.md).
    pub file: PathBuf,
    /// Seed of the random inputs of the gradient check.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// FILE.onnx, or FILE.toml: a sidecar (docs/onnx.md).
    pub file: PathBuf,
    /// A batch `[n, ...]` in the network's own layout (NCHW for images),
    /// float32 or float64.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the output `[n, ...]` (the input's float type).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the gradient, with respect to the input, of the sum over
    /// the batch of value K of each sample's flattened output.
    #[arg(long, value_name = "K", requires = "grad_out")]
    pub grad_of: Option<usize>,
    /// Where to write that gradient (the input's shape).
    #[arg(long, requires = "grad_of")]
    pub grad_out: Option<PathBuf>,
}

pub fn run(c: OnnxCommand) -> anyhow::Result<()> {
    match c {
        OnnxCommand::Check(a) => {
            let r = onnx::check(&a.file, a.seed)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            print!("{r}");
            Ok(())
        }
        OnnxCommand::Eval(a) => {
            let spec = EvalSpec {
                network: a.file,
                input: a.input,
                out: a.out.clone(),
                grad_of: a.grad_of.zip(a.grad_out),
            };
            let n = onnx::eval(&spec)?;
            println!("ran {n} samples; wrote {}", a.out.display());
            Ok(())
        }
    }
}
