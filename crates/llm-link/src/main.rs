// mimalloc: the request path allocates small short-lived buffers on every
// worker thread; glibc malloc's arena locks showed up in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    llm_link::cli::run()
}
