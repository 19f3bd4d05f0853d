// SPDX-License-Identifier: LGPL-2.1-or-later
// A main() for the fuzz targets when libFuzzer is not there (gcc builds): runs
// LLVMFuzzerTestOneInput once on every file named on the command line, or in a
// directory named there (the corpus and the regressions), like a libFuzzer binary
// given files. An invariant that does not hold aborts (FUZZ_CHECK). Fails if it
// ran no input at all, so that a missing corpus cannot pass.
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace {

void run_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    std::exit(1);
  }
  // A copy in a buffer of exactly the input's size, so that ASan sees a read past it.
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto* data = new std::uint8_t[bytes.size()];
  std::copy(bytes.begin(), bytes.end(), data);
  std::fprintf(stderr, "running %s (%zu bytes)\n", path.c_str(), bytes.size());
  LLVMFuzzerTestOneInput(data, bytes.size());
  delete[] data;
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
  std::size_t ran = 0;
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path arg(argv[i]);
    if (std::filesystem::is_directory(arg)) {
      std::vector<std::filesystem::path> files;
      for (const auto& e : std::filesystem::directory_iterator(arg)) {
        if (e.is_regular_file()) files.push_back(e.path());
      }
      std::sort(files.begin(), files.end());
      for (const auto& f : files) run_file(f);
      ran += files.size();
    } else if (std::filesystem::exists(arg)) {
      run_file(arg);
      ++ran;
    }
  }
  if (ran == 0) {
    std::fprintf(stderr, "no input found\n");
    return 1;
  }
  std::fprintf(stderr, "%zu inputs ran\n", ran);
  return 0;
}
