# The two front-door commands (see README.md). Each installs what it needs,
# configures with CMake presets and builds with Ninja.
#   make demo    build the release CLI and run the examples
#   make test    the g++ build with every test, the clang build with
#                -Wthread-safety -Werror running the tests under ASan+UBSan,
#                and the concurrency tests under TSan
# Heavier, optional targets: make bench, make stress.

.PHONY: demo test test-gcc test-asan test-tsan bench stress bootstrap clean

bootstrap:
	@./tools/bootstrap.sh

demo: bootstrap
	cmake --preset release
	cmake --build --preset release --target shadowmm_cli
	./tools/demo.sh build/release/shadowmm

test: test-gcc test-asan test-tsan

test-gcc: bootstrap
	cmake --preset gcc
	cmake --build --preset gcc
	ctest --preset gcc

test-asan: bootstrap
	cmake --preset clang-asan
	cmake --build --preset clang-asan
	ctest --preset clang-asan

test-tsan: bootstrap
	cmake --preset tsan
	cmake --build --preset tsan
	ctest --preset tsan

bench: bootstrap
	cmake --preset release -DSHADOWMM_BUILD_BENCH=ON
	cmake --build --preset release
	for b in build/release/bench/*_bench; do $$b --benchmark_min_time=0.2; done

# Long randomised stress runs (bounded by STRESS_SECONDS, default 120).
STRESS_SECONDS ?= 120
stress: bootstrap
	cmake --preset gcc
	cmake --build --preset gcc --target concurrency_test
	SHADOWMM_STRESS_SECONDS=$(STRESS_SECONDS) build/gcc/tests/concurrency_test

clean:
	rm -rf build
