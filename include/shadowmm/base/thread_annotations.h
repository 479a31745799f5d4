// File: shadowmm/base/thread_annotations.h
//
// Clang thread-safety analysis attributes, in the clang/Abseil spelling. The
// clang preset builds with -Wthread-safety -Werror; under GCC they expand to
// nothing. Abseil's headers define the same legacy names with the same
// attributes; ours replace them (#undef first) so either include order works.

#pragma once

#if defined(__clang__)
#define SMM_TSA(x) __attribute__((x))
#else
#define SMM_TSA(x)
#endif

#undef CAPABILITY
#define CAPABILITY(x) SMM_TSA(capability(x))
#define SCOPED_CAPABILITY SMM_TSA(scoped_lockable)
#undef GUARDED_BY
#define GUARDED_BY(x) SMM_TSA(guarded_by(x))
#undef PT_GUARDED_BY
#define PT_GUARDED_BY(x) SMM_TSA(pt_guarded_by(x))
#undef ACQUIRED_BEFORE
#define ACQUIRED_BEFORE(...) SMM_TSA(acquired_before(__VA_ARGS__))
#undef ACQUIRED_AFTER
#define ACQUIRED_AFTER(...) SMM_TSA(acquired_after(__VA_ARGS__))
#undef REQUIRES
#define REQUIRES(...) SMM_TSA(requires_capability(__VA_ARGS__))
#undef REQUIRES_SHARED
#define REQUIRES_SHARED(...) SMM_TSA(requires_shared_capability(__VA_ARGS__))
#undef ACQUIRE
#define ACQUIRE(...) SMM_TSA(acquire_capability(__VA_ARGS__))
#undef ACQUIRE_SHARED
#define ACQUIRE_SHARED(...) SMM_TSA(acquire_shared_capability(__VA_ARGS__))
#undef RELEASE
#define RELEASE(...) SMM_TSA(release_capability(__VA_ARGS__))
#undef RELEASE_SHARED
#define RELEASE_SHARED(...) SMM_TSA(release_shared_capability(__VA_ARGS__))
#undef RELEASE_GENERIC
#define RELEASE_GENERIC(...) SMM_TSA(release_generic_capability(__VA_ARGS__))
#undef TRY_ACQUIRE
#define TRY_ACQUIRE(...) SMM_TSA(try_acquire_capability(__VA_ARGS__))
#undef TRY_ACQUIRE_SHARED
#define TRY_ACQUIRE_SHARED(...) SMM_TSA(try_acquire_shared_capability(__VA_ARGS__))
#undef EXCLUDES
#define EXCLUDES(...) SMM_TSA(locks_excluded(__VA_ARGS__))
#undef ASSERT_CAPABILITY
#define ASSERT_CAPABILITY(x) SMM_TSA(assert_capability(x))
#undef ASSERT_SHARED_CAPABILITY
#define ASSERT_SHARED_CAPABILITY(x) SMM_TSA(assert_shared_capability(x))
#undef RETURN_CAPABILITY
#define RETURN_CAPABILITY(x) SMM_TSA(lock_returned(x))
#undef NO_THREAD_SAFETY_ANALYSIS
#define NO_THREAD_SAFETY_ANALYSIS SMM_TSA(no_thread_safety_analysis)
