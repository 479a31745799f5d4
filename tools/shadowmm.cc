// File: tools/shadowmm.cc
//
// The `shadowmm` command:
//   shadowmm run [--json] [--trace] [--no-summary] FILE   run a scenario script

#include <CLI/CLI.hpp>
#include <iostream>

#include "shadowmm/sim/runner.h"

int main(int argc, char** argv) {
  CLI::App app{"shadowmm: an executable model of the Linux mm and its MMU notifiers"};
  app.require_subcommand(1);
  CLI::App* run = app.add_subcommand("run", "run a scenario script (.smm)");
  std::string file;
  smm::sim::RunOptions opts;
  bool no_summary = false;
  run->add_option("FILE", file, "script to run ('-' = stdin)")->required();
  run->add_flag("--json", opts.json, "one JSON object per executed command on stdout");
  run->add_flag("--trace", opts.trace, "print every command with its result");
  run->add_flag("--no-summary", no_summary, "do not print the end-of-run summary");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : smm::sim::kExitBadScript;
  }
  opts.summary = !no_summary;
  return smm::sim::run_script_file(file, opts, std::cout, std::cerr);
}
