// File: shadowmm/sim/runner.h
//
// `shadowmm run`: executes a parsed script against one simulated machine
// and reports what happened (spec/scenario-language.md: results and
// `expect`, `dump`, --json output, exit status).

#pragma once

#include <iosfwd>
#include <memory>
#include <string>

#include "shadowmm/sim/script.h"

namespace smm::sim {

struct RunOptions {
  bool json = false;   // one JSON object per executed command on `out`
  bool trace = false;  // text mode: also print every command with its result
  bool summary = true; // text mode: print the final machine summary
};

// Exit status of a run: 0 ran to the end with every expect holding; 1 a
// command failed unexpectedly, an expect failed or the oracle found a
// violation; 2 the script could not be read or parsed.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitBadScript = 2;

// Parses and runs `text`. Output goes to `out`, diagnostics to `err`.
int run_script_text(const std::string& text, const std::string& file, const RunOptions& options,
                    std::ostream& out, std::ostream& err);
// Reads FILE ("-" = stdin) and runs it.
int run_script_file(const std::string& path, const RunOptions& options, std::ostream& out, std::ostream& err);

}  // namespace smm::sim
