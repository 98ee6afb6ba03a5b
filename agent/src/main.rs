fn main() {
    eprintln!("mcp-ledger-agent: not built yet (issue 3)");
    std::process::exit(1);
}
