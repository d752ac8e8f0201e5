// sparse24 kernels on the CPU: a small, exact model of the CUDA and PTX features our kernels use.
//
// Host C++ only. kernels/emulate.py force-includes this header (-include) ahead of a
// kernels/csrc/*.cu source compiled by the system C++ compiler with -DSPARSE24_EMULATE, so the
// very text NVRTC compiles runs here. common.cuh maps its types and PTX helpers onto emu::
// below; no kernel has a CPU copy.
//
// What it models:
// - Threads are cooperative fibers (ucontext), one block at a time. A thread runs until it
//   reaches a barrier or a warp collective (shuffle, ldmatrix, mma.sp), then the scheduler
//   picks the next runnable thread: lowest id first, highest first, or at random (seeded), so
//   the interleaving a race depends on changes with the schedule.
// - __syncthreads completes only when every thread of the block waits at the same call site;
//   a thread that exits while others wait (or before they arrive), or waits at another site, is
//   an error. A warp collective completes when every lane of its mask arrives at the same call
//   site; a lane that exits or reaches another collective first is an error. Nothing is
//   papered over: on a GPU each of these hangs or is undefined.
// - Global memory is only what the launch passed: every access through a kernel's pointer
//   arguments (gptr) is checked against the buffer it came from, for bounds and alignment.
// - Shared memory: __shared__ arrays (shared_array) get addresses in a per-block window, are
//   poisoned (0xFF bytes) at the start of every block, and every access is checked per
//   dimension. Each byte remembers its last writer and readers per barrier interval: a read of
//   bytes another thread wrote since the last barrier, a write of bytes another thread read or
//   wrote since then, a read of bytes never written in the block, and any access to bytes an
//   un-awaited cp.async is still copying are reported (fatal by default).
// - Bank conflicts of every warp-wide shared load and store (ldmatrix included) are counted:
//   the accesses of the lanes are grouped by their order within each lane between two
//   warp-synchronous points, which is exact for converged code.
// - PTX (cvt, cvta, cp.async, ldmatrix, mma.sp) per the PTX ISA; each function cites its section.
#pragma once

#ifdef SPARSE24_DISCOVER
// Name discovery (kernels/emulate.py runs the preprocessor once with this): leave markers.
#define __global__ SPARSE24_GLOBAL
#define __launch_bounds__(...) SPARSE24_BOUNDS(__VA_ARGS__)
#else

#include <ucontext.h>

#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __launch_bounds__(...)
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__
#define __shared__ static

namespace emu {

// ---------------------------------------------------------------- launch interface (ctypes)

// Mirrored by kernels/emulate.py (_Launch). Inputs first, then outputs.
struct LaunchDesc {
    uint32_t grid[3];
    uint32_t block[3];
    int32_t n_args;
    const uint64_t* args;   // raw bits: an address, or an int32 value
    const int32_t* kinds;   // 0 pointer, 1 int32
    const uint64_t* sizes;  // bytes of the buffer behind each pointer argument (0 for null)
    int32_t schedule;       // 0 lowest thread id first, 1 highest first, 2 random
    uint64_t seed;
    int32_t report_races;   // 1: races and cp.async hazards are counted and the run goes on
    // outputs
    uint64_t stats[16];     // see Stat
    char* message;          // the error (return 1), or the first race when report_races
    int32_t message_size;
};

enum Stat {
    LDS_INSTRUCTIONS, LDS_WAVEFRONTS, LDS_IDEAL,
    STS_INSTRUCTIONS, STS_WAVEFRONTS, STS_IDEAL,
    LDMATRIX_INSTRUCTIONS, LDMATRIX_WAVEFRONTS, LDMATRIX_IDEAL,
    BARRIERS, RACES, BLOCKS, THREADS, SHARED_BYTES, MMA_SP, CP_ASYNC,
};

struct dim3u {
    unsigned x, y, z;
};

struct Region {  // one buffer passed to the kernel
    uintptr_t base;
    size_t bytes;
    int arg;
};

struct SharedArrayBase;

struct Copy {  // one cp.async in flight
    SharedArrayBase* array;
    uint32_t offset;
    uintptr_t src;
    int cp_size, src_size;
};

enum class State { runnable, barrier, warp, exited };

struct Thread {
    ucontext_t context;
    char* stack;
    dim3u index;
    int id, lane, warp;
    State state;
    std::vector<Copy> uncommitted;
    std::deque<std::vector<Copy>> groups;
};

enum class Collective { none, shfl, ldmatrix, mma_sp };

inline const char* collective_name(Collective c) {
    switch (c) {
        case Collective::shfl: return "__shfl_xor_sync";
        case Collective::ldmatrix: return "ldmatrix.x4";
        case Collective::mma_sp: return "mma.sp";
        default: return "?";
    }
}

struct Access {  // one lane's shared access, for the bank-conflict count
    uint32_t address;
    int size;
    bool store;
};

struct Warp {
    Collective kind = Collective::none;
    int line = 0;
    uint32_t mask = 0, arrived = 0, exists = 0, exited = 0;
    void* operands[32] = {};
    std::vector<Access> log[32];
};

struct Launch;
Launch*& current_launch();

struct Launch {
    LaunchDesc* desc;
    const char* kernel;
    std::vector<Region> regions;
    std::function<void()> body;
    dim3u block_index{0, 0, 0}, grid{1, 1, 1}, block{1, 1, 1};
    std::vector<Thread> threads;
    std::vector<Warp> warps;
    std::vector<int> runnable;
    Thread* current = nullptr;
    ucontext_t scheduler;
    uint64_t block_serial = 0;
    uint32_t epoch = 1;  // barrier intervals of the current block
    int exited = 0, barrier_arrived = 0, barrier_line = 0;
    std::vector<SharedArrayBase*> shared;  // this block's arrays, in the order first touched
    uint32_t shared_top = 0;
    bool failed = false, race_recorded = false;
    std::string message;
    std::mt19937_64 random;
    uint64_t* stats;

    void set_message(const std::string& text) {
        if (desc->message && desc->message_size > 0) {
            std::snprintf(desc->message, (size_t)desc->message_size, "%s", text.c_str());
        }
    }
};

// One fiber stack per thread of a block, kept for the process.
constexpr size_t STACK_BYTES = 256 * 1024;
inline std::vector<std::unique_ptr<char[]>>& stack_pool() {
    static std::vector<std::unique_ptr<char[]>> pool;
    return pool;
}

inline Launch*& current_launch() {
    static Launch* launch = nullptr;
    return launch;
}

inline Launch& L() { return *current_launch(); }
inline Thread& me() { return *L().current; }

inline std::string vformat(const char* format, va_list args) {
    char buffer[1024];
    std::vsnprintf(buffer, sizeof buffer, format, args);
    return buffer;
}

inline std::string where() {
    Launch& l = L();
    char buffer[256];
    if (l.current) {
        const Thread& t = *l.current;
        std::snprintf(buffer, sizeof buffer, "%s, block (%u,%u,%u), thread (%u,%u,%u)", l.kernel, l.block_index.x, l.block_index.y,
                      l.block_index.z, t.index.x, t.index.y, t.index.z);
    } else {
        std::snprintf(buffer, sizeof buffer, "%s, block (%u,%u,%u)", l.kernel, l.block_index.x, l.block_index.y, l.block_index.z);
    }
    return buffer;
}

// A fault ends the launch: the message is kept, the fiber is abandoned and never resumed.
[[noreturn]] inline void fault(const char* format, ...) {
    va_list args;
    va_start(args, format);
    std::string text = where() + ": " + vformat(format, args);
    va_end(args);
    Launch& l = L();
    l.failed = true;
    l.message = text;
    if (l.current) {
        Thread* t = l.current;
        swapcontext(&t->context, &l.scheduler);
    }
    std::abort();  // unreachable: the scheduler never resumes a faulted fiber
}

// A race or a cp.async hazard: fatal, or counted (report_races) with the first one kept.
inline void race(const char* format, ...) {
    va_list args;
    va_start(args, format);
    std::string text = vformat(format, args);
    va_end(args);
    Launch& l = L();
    if (!l.desc->report_races) fault("%s", text.c_str());
    l.stats[RACES]++;
    if (!l.race_recorded) {
        l.race_recorded = true;
        l.message = where() + ": " + text;
    }
}

inline void yield() {
    Launch& l = L();
    Thread* t = l.current;
    swapcontext(&t->context, &l.scheduler);
}

inline void make_runnable(int id) {
    L().threads[id].state = State::runnable;
    L().runnable.push_back(id);
}

// ---------------------------------------------------------------- CUDA built-ins

}  // namespace emu

#define threadIdx (::emu::me().index)
#define blockIdx (::emu::L().block_index)
#define blockDim (::emu::L().block)
#define gridDim (::emu::L().grid)

namespace emu {

// ---------------------------------------------------------------- global memory

template <typename T>
struct gptr {  // a pointer into one buffer passed to the kernel; checked on every access
    uintptr_t address = 0;
    const Region* region = nullptr;

    gptr() = default;
    gptr(std::nullptr_t) {}
    gptr(uintptr_t a, const Region* r) : address(a), region(r) {}
    template <typename U, typename = std::enable_if_t<std::is_convertible<U*, T*>::value>>
    gptr(const gptr<U>& other) : address(other.address), region(other.region) {}

    gptr operator+(long long i) const { return {address + (uintptr_t)(i * (long long)sizeof(T)), region}; }
    gptr operator-(long long i) const { return {address - (uintptr_t)(i * (long long)sizeof(T)), region}; }
    bool operator==(std::nullptr_t) const { return address == 0; }
    bool operator!=(std::nullptr_t) const { return address != 0; }

    T* checked(size_t bytes, bool write) const;
    T& operator*() const { return *checked(sizeof(T), !std::is_const<T>::value); }
    T& operator[](long long i) const { return *(*this + i).checked(sizeof(T), !std::is_const<T>::value); }
};

inline void check_global(uintptr_t address, const Region* region, size_t bytes, size_t alignment, bool write) {
    const char* what = write ? "write" : "read";
    if (address == 0) fault("%s of %zu bytes through a null pointer", what, bytes);
    if (region == nullptr) fault("%s of %zu bytes at %#lx, which is in no buffer passed to the kernel", what, bytes, (unsigned long)address);
    const long long offset = (long long)(address - region->base);
    if (address < region->base || offset + (long long)bytes > (long long)region->bytes) {
        fault("out-of-bounds %s of %zu bytes at byte offset %lld of argument %d (a buffer of %zu bytes)", what, bytes, offset, region->arg, region->bytes);
    }
    if (address % alignment) fault("misaligned %s: %zu bytes at byte offset %lld of argument %d", what, bytes, offset, region->arg);
}

template <typename T>
T* gptr<T>::checked(size_t bytes, bool write) const {
    check_global(address, region, bytes, alignof(T), write);
    return reinterpret_cast<T*>(address);
}

template <typename To, typename From>
gptr<To> global_cast(gptr<From> p) {
    return {p.address, p.region};
}

// ---------------------------------------------------------------- shared memory

constexpr uint32_t SHARED_LIMIT = 48 * 1024;  // static __shared__ per block
constexpr uint16_t MANY = 0xffff;

struct Shadow {
    uint16_t writer = 0, reader = 0, pending = 0;  // thread id + 1; MANY readers
    uint32_t write_epoch = 0, read_epoch = 0;
};

struct SharedArrayBase {
    unsigned char* storage;
    uint32_t bytes;
    const char* type;
    std::vector<int> dims;
    uint64_t serial = 0;  // the block this array was last set up for
    uint32_t base = 0;    // address in the block's shared window
    std::vector<Shadow> shadow;

    SharedArrayBase(unsigned char* s, uint32_t b, const char* t, std::vector<int> d) : storage(s), bytes(b), type(t), dims(std::move(d)) {}

    std::string describe() const {
        std::string text = type;
        for (int d : dims) text += "[" + std::to_string(d) + "]";
        return text;
    }

    void touch() {  // first use in this block: place it in the window and poison it
        Launch& l = L();
        if (serial == l.block_serial) return;
        serial = l.block_serial;
        uint32_t top = (l.shared_top + 127u) & ~127u;
        base = top;
        l.shared_top = top + bytes;
        l.stats[SHARED_BYTES] = l.shared_top > l.stats[SHARED_BYTES] ? l.shared_top : l.stats[SHARED_BYTES];
        if (l.shared_top > SHARED_LIMIT) fault("static shared memory of %u bytes exceeds the %u bytes a block may declare", l.shared_top, SHARED_LIMIT);
        l.shared.push_back(this);
        std::memset(storage, 0xff, bytes);
        shadow.assign(bytes, Shadow{});
    }

    void check_range(long long offset, size_t size, const char* what) const {
        if (offset < 0 || offset + (long long)size > (long long)bytes) {
            fault("shared %s of %zu bytes at byte offset %lld of %s (%u bytes): outside the array", what, size, offset, describe().c_str(), bytes);
        }
        if ((base + (uint64_t)offset) % size && (size == 2 || size == 4 || size == 8 || size == 16)) {
            fault("misaligned shared %s of %zu bytes at byte offset %lld of %s", what, size, offset, describe().c_str());
        }
    }

    void on_read(uint32_t offset, size_t size, int tid) {
        Launch& l = L();
        const uint16_t id = (uint16_t)(tid + 1);
        for (size_t i = 0; i < size; ++i) {
            Shadow& s = shadow[offset + i];
            if (s.pending) {
                race("reads byte %u of shared %s while a cp.async of thread %d is still copying into it (no cp.async.wait_group covers its group yet)",
                     (unsigned)(offset + i), describe().c_str(), s.pending - 1);
            } else if (s.writer == 0) {
                fault("reads byte %u of shared %s, which no thread of this block has written", (unsigned)(offset + i), describe().c_str());
            } else if (s.writer != id && s.write_epoch == l.epoch) {
                race("reads byte %u of shared %s that thread %d wrote with no __syncthreads in between", (unsigned)(offset + i), describe().c_str(), s.writer - 1);
            }
            if (s.read_epoch != l.epoch) {
                s.read_epoch = l.epoch;
                s.reader = id;
            } else if (s.reader != id) {
                s.reader = MANY;
            }
        }
    }

    void on_write(uint32_t offset, size_t size, int tid, bool async) {
        Launch& l = L();
        const uint16_t id = (uint16_t)(tid + 1);
        for (size_t i = 0; i < size; ++i) {
            Shadow& s = shadow[offset + i];
            const unsigned byte = (unsigned)(offset + i);
            if (s.pending) {
                race("writes byte %u of shared %s while a cp.async of thread %d is still copying into it", byte, describe().c_str(), s.pending - 1);
            } else if (s.writer != 0 && s.writer != id && s.write_epoch == l.epoch) {
                race("writes byte %u of shared %s that thread %d also wrote with no __syncthreads in between", byte, describe().c_str(), s.writer - 1);
            } else if (s.read_epoch == l.epoch && s.reader != 0 && s.reader != id) {
                race("writes byte %u of shared %s that %s read with no __syncthreads in between", byte, describe().c_str(),
                     s.reader == MANY ? "other threads" : ("thread " + std::to_string(s.reader - 1)).c_str());
            }
            if (async) {
                s.pending = id;
            } else {
                s.writer = id;
                s.write_epoch = l.epoch;
            }
        }
    }

    void load(uint32_t offset, size_t size, void* out) {
        touch();
        check_range(offset, size, "load");
        Thread& t = me();
        on_read(offset, size, t.id);
        L().warps[t.warp].log[t.lane].push_back({base + offset, (int)size, false});
        std::memcpy(out, storage + offset, size);
    }

    void store(uint32_t offset, size_t size, const void* in) {
        touch();
        check_range(offset, size, "store");
        Thread& t = me();
        on_write(offset, size, t.id, false);
        L().warps[t.warp].log[t.lane].push_back({base + offset, (int)size, true});
        std::memcpy(storage + offset, in, size);
    }
};

// The array holding shared address `address`, with `size` bytes from there inside it.
inline SharedArrayBase* resolve_shared(uint32_t address, size_t size, const char* what) {
    for (SharedArrayBase* a : L().shared) {
        if (address >= a->base && address < a->base + a->bytes) {
            if (address + size > a->base + a->bytes) {
                fault("%s of %zu bytes at shared address %#x runs past the end of %s", what, size, address, a->describe().c_str());
            }
            return a;
        }
    }
    fault("%s at shared address %#x, which is inside no __shared__ array of this block", what, address);
}

template <typename T>
struct sref;

template <typename T>
struct sptr {  // a pointer into one __shared__ array
    SharedArrayBase* array = nullptr;
    long long offset = 0;  // bytes

    sptr operator+(long long i) const { return {array, offset + i * (long long)sizeof(T)}; }
    sptr operator-(long long i) const { return {array, offset - i * (long long)sizeof(T)}; }
    sref<T> operator*() const { return {array, offset}; }
    sref<T> operator[](long long i) const { return *(*this + i); }
};

template <typename T>
struct sref {  // one element of a __shared__ array: reads and writes are checked and recorded
    SharedArrayBase* array;
    long long offset;

    operator T() const {
        T value;
        array->load((uint32_t)offset, sizeof(T), &value);
        return value;
    }
    sref& operator=(T value) {
        array->store((uint32_t)offset, sizeof(T), &value);
        return *this;
    }
    sref& operator=(const sref& other) { return *this = (T)other; }
    sptr<T> operator&() const { return {array, offset}; }
};

template <typename To, typename From>
sptr<To> shared_cast(sptr<From> p) {
    return {p.array, p.offset};
}

template <typename T, int... D>
struct sindex;

template <typename T, int... D>
struct sindex_result {
    using type = sindex<T, D...>;
};
template <typename T>
struct sindex_result<T> {
    using type = sref<T>;
};

template <int... D>
struct product {
    static constexpr long long value = 1;
};
template <int D0, int... D>
struct product<D0, D...> {
    static constexpr long long value = D0 * product<D...>::value;
};

template <typename T, int D0, int... D>
struct sindex<T, D0, D...> {  // a partly indexed __shared__ array
    SharedArrayBase* array;
    long long offset;
    int dimension;

    typename sindex_result<T, D...>::type operator[](long long i) const {
        if (i < 0 || i >= D0) fault("index %lld out of range [0, %d) in dimension %d of shared %s", i, D0, dimension, array->describe().c_str());
        const long long o = offset + i * product<D...>::value * (long long)sizeof(T);
        if constexpr (sizeof...(D) == 0) {
            return sref<T>{array, o};
        } else {
            return sindex<T, D...>{array, o, dimension + 1};
        }
    }

};

template <typename T>
inline const char* type_name() {
    if (std::is_same<T, unsigned short>::value) return "u16";
    if (std::is_same<T, unsigned int>::value) return "u32";
    if (std::is_same<T, float>::value) return "float";
    return "T";
}

template <typename T, int D0, int... D>
struct shared_array : SharedArrayBase {  // a __shared__ T[D0][D...]
    alignas(16) unsigned char data[sizeof(T) * product<D0, D...>::value];

    shared_array() : SharedArrayBase(data, (uint32_t)sizeof(data), type_name<T>(), {D0, D...}) {}
    shared_array(const shared_array&) = delete;

    auto operator[](long long i) { return sindex<T, D0, D...>{this, 0, 1}[i]; }
};

template <typename T, typename A>
sptr<T> shared_pointer(A* array) {  // the array's first element
    return {array, 0};
}

// ---------------------------------------------------------------- block execution

inline void fiber_main();

inline void start_block() {
    Launch& l = L();
    const int n = (int)(l.block.x * l.block.y * l.block.z);
    static uint64_t serial = 0;  // across launches: a static __shared__ array must be set up again in every block
    l.block_serial = ++serial;
    l.epoch = 1;
    l.exited = l.barrier_arrived = l.barrier_line = 0;
    l.shared.clear();
    l.shared_top = 0;
    l.warps.assign((size_t)(n + 31) / 32, Warp{});
    l.threads.assign((size_t)n, Thread{});
    l.runnable.clear();
    auto& pool = stack_pool();
    while ((int)pool.size() < n) pool.emplace_back(new char[STACK_BYTES]);
    for (int id = 0; id < n; ++id) {
        Thread& t = l.threads[id];
        t.id = id;
        t.lane = id % 32;
        t.warp = id / 32;
        t.index = {(unsigned)(id % l.block.x), (unsigned)(id / l.block.x % l.block.y), (unsigned)(id / (l.block.x * l.block.y))};
        t.state = State::runnable;
        t.stack = pool[id].get();
        l.warps[t.warp].exists |= 1u << t.lane;
        getcontext(&t.context);
        t.context.uc_stack.ss_sp = t.stack;
        t.context.uc_stack.ss_size = STACK_BYTES;
        t.context.uc_link = nullptr;
        makecontext(&t.context, fiber_main, 0);
        l.runnable.push_back(id);
    }
}

// Bank conflicts of one warp-wide access: per phase (all lanes for <= 4 bytes, half or quarter
// warps for 8 and 16), the busiest bank's count of distinct 4-byte words is its wavefronts.
inline uint64_t wavefronts(const std::vector<std::pair<int, Access>>& lanes, int lanes_per_phase, uint64_t* ideal) {
    uint64_t total = 0;
    *ideal = 0;
    for (int phase = 0; phase < 32 / lanes_per_phase; ++phase) {
        std::vector<uint32_t> words[32];
        bool any = false;
        for (const auto& [lane, access] : lanes) {
            if (lane / lanes_per_phase != phase) continue;
            any = true;
            for (uint32_t w = access.address / 4; w <= (access.address + access.size - 1) / 4; ++w) {
                auto& bank = words[w % 32];
                bool seen = false;
                for (uint32_t v : bank) seen |= v == w;
                if (!seen) bank.push_back(w);
            }
        }
        if (!any) continue;
        size_t busiest = 1;
        for (auto& bank : words) busiest = bank.size() > busiest ? bank.size() : busiest;
        total += busiest;
        *ideal += 1;
    }
    return total;
}

inline void count_bank_conflicts(Warp& w) {
    Launch& l = L();
    size_t longest = 0;
    for (auto& log : w.log) longest = log.size() > longest ? log.size() : longest;
    for (size_t k = 0; k < longest; ++k) {
        std::vector<std::pair<int, Access>> lanes;
        for (int lane = 0; lane < 32; ++lane) {
            if (k < w.log[lane].size()) lanes.push_back({lane, w.log[lane][k]});
        }
        const Access& first = lanes.front().second;
        const int per_phase = first.size <= 4 ? 32 : first.size == 8 ? 16 : 8;
        uint64_t ideal = 0, waves = wavefronts(lanes, per_phase, &ideal);
        const int base = first.store ? STS_INSTRUCTIONS : LDS_INSTRUCTIONS;
        l.stats[base] += 1;
        l.stats[base + 1] += waves;
        l.stats[base + 2] += ideal;
    }
    for (auto& log : w.log) log.clear();
}

inline void check_exit(Thread& t) {
    Launch& l = L();
    Warp& w = l.warps[t.warp];
    if (l.barrier_arrived) fault("exits while %d threads wait at __syncthreads (line %d): every thread of the block must reach it", l.barrier_arrived, l.barrier_line);
    if (w.arrived && (w.mask >> t.lane & 1)) {
        fault("exits while lanes 0x%08x of warp %d wait for it at %s (line %d)", w.arrived, t.warp, collective_name(w.kind), w.line);
    }
    if (!t.uncommitted.empty() || !t.groups.empty()) {
        // Allowed on a GPU (the copies land anyway), but nothing could read them: stop them landing.
        for (auto& g : t.groups)
            for (auto& c : g)
                for (int i = 0; i < c.cp_size; ++i) c.array->shadow[c.offset + i].pending = 0;
        for (auto& c : t.uncommitted)
            for (int i = 0; i < c.cp_size; ++i) c.array->shadow[c.offset + i].pending = 0;
    }
    w.exited |= 1u << t.lane;
    l.exited++;
}

inline void fiber_main() {
    Launch& l = L();
    l.body();
    Thread& t = me();
    check_exit(t);
    t.state = State::exited;
    swapcontext(&t.context, &l.scheduler);
    std::abort();
}

inline std::string describe_waits() {
    Launch& l = L();
    std::string text;
    if (l.barrier_arrived) text += std::to_string(l.barrier_arrived) + " threads wait at __syncthreads (line " + std::to_string(l.barrier_line) + ")";
    for (size_t i = 0; i < l.warps.size(); ++i) {
        const Warp& w = l.warps[i];
        if (!w.arrived) continue;
        char buffer[160];
        std::snprintf(buffer, sizeof buffer, "%slanes 0x%08x of warp %zu wait at %s (line %d) for lanes 0x%08x", text.empty() ? "" : "; ", w.arrived, i,
                      collective_name(w.kind), w.line, w.mask & ~w.arrived);
        text += buffer;
    }
    return text;
}

inline bool run_block() {
    Launch& l = L();
    start_block();
    const int n = (int)l.threads.size();
    while (true) {
        if (l.runnable.empty()) {
            if (l.exited == n) break;
            l.current = nullptr;
            l.failed = true;
            l.message = where() + ": deadlock: " + describe_waits();
            return false;
        }
        size_t pick = 0;
        if (l.desc->schedule == 2) {
            pick = (size_t)(l.random() % l.runnable.size());
        } else {
            for (size_t i = 1; i < l.runnable.size(); ++i) {
                const bool better = l.desc->schedule == 0 ? l.runnable[i] < l.runnable[pick] : l.runnable[i] > l.runnable[pick];
                if (better) pick = i;
            }
        }
        const int id = l.runnable[pick];
        l.runnable[pick] = l.runnable.back();
        l.runnable.pop_back();
        l.current = &l.threads[id];
        swapcontext(&l.scheduler, &l.threads[id].context);
        l.current = nullptr;
        if (l.failed) return false;
    }
    for (Warp& w : l.warps) count_bank_conflicts(w);
    return true;
}

template <typename T>
bool convert_argument(int i, T& out) {
    static_assert(std::is_integral<T>::value && sizeof(T) == 4, "kernel arguments are gptr<...> or 32-bit integers");
    Launch& l = L();
    if (l.desc->kinds[i] != 1) {
        l.message = std::string(l.kernel) + ": argument " + std::to_string(i) + " is a 32-bit integer, the launch passed a pointer";
        return false;
    }
    out = (T)(int32_t)(uint32_t)l.desc->args[i];
    return true;
}

template <typename T>
bool convert_argument(int i, gptr<T>& out) {
    Launch& l = L();
    if (l.desc->kinds[i] != 0) {
        l.message = std::string(l.kernel) + ": argument " + std::to_string(i) + " is a pointer, the launch passed an integer";
        return false;
    }
    out = gptr<T>{(uintptr_t)l.desc->args[i], l.desc->args[i] == 0 ? nullptr : &l.regions[(size_t)i]};
    return true;
}

template <typename... A, size_t... I>
bool convert_arguments(std::tuple<A...>& values, std::index_sequence<I...>) {
    return (convert_argument((int)I, std::get<I>(values)) && ...);
}

// Runs `kernel` over the grid: the entry point of every generated trampoline.
template <typename... A>
int launch_kernel(LaunchDesc* desc, const char* name, long long bounds, void (*kernel)(A...)) {
    Launch launch;
    launch.desc = desc;
    launch.kernel = name;
    launch.stats = desc->stats;
    launch.random.seed(desc->seed);
    std::memset(desc->stats, 0, sizeof desc->stats);
    current_launch() = &launch;
    struct Reset {
        ~Reset() { current_launch() = nullptr; }
    } reset;
    auto fail = [&](const std::string& text) {
        launch.set_message(text);
        return 1;
    };
    launch.grid = {desc->grid[0], desc->grid[1], desc->grid[2]};
    launch.block = {desc->block[0], desc->block[1], desc->block[2]};
    const unsigned long long threads = (unsigned long long)desc->block[0] * desc->block[1] * desc->block[2];
    char buffer[256];
    if (threads == 0 || desc->grid[0] == 0 || desc->grid[1] == 0 || desc->grid[2] == 0) {
        return fail(std::string(name) + ": empty grid or block (CUDA_ERROR_INVALID_VALUE)");
    }
    if (threads > 1024 || desc->block[2] > 64 || desc->grid[1] > 65535 || desc->grid[2] > 65535 || desc->grid[0] > 2147483647u) {
        std::snprintf(buffer, sizeof buffer, "%s: grid (%u,%u,%u) x block (%u,%u,%u) exceeds the CUDA limits", name, desc->grid[0], desc->grid[1],
                      desc->grid[2], desc->block[0], desc->block[1], desc->block[2]);
        return fail(buffer);
    }
    if (bounds > 0 && (long long)threads > bounds) {
        std::snprintf(buffer, sizeof buffer, "%s: %llu threads per block exceed its __launch_bounds__(%lld)", name, threads, bounds);
        return fail(buffer);
    }
    if (desc->n_args != (int)sizeof...(A)) {
        return fail(std::string(name) + " takes " + std::to_string(sizeof...(A)) + " arguments, the launch passed " + std::to_string(desc->n_args));
    }
    for (int i = 0; i < desc->n_args; ++i) launch.regions.push_back({(uintptr_t)desc->args[i], (size_t)desc->sizes[i], i});
    std::tuple<A...> values;
    if (!convert_arguments(values, std::index_sequence_for<A...>{})) return fail(launch.message);
    launch.body = [&] { std::apply(kernel, values); };
    for (unsigned z = 0; z < launch.grid.z; ++z)
        for (unsigned y = 0; y < launch.grid.y; ++y)
            for (unsigned x = 0; x < launch.grid.x; ++x) {
                launch.block_index = {x, y, z};
                launch.stats[BLOCKS]++;
                launch.stats[THREADS] += threads;
                if (!run_block()) return fail(launch.message);
            }
    if (launch.race_recorded) launch.set_message(launch.message);
    return 0;
}

// ---------------------------------------------------------------- barrier, warp collectives, atomics

inline void syncthreads(int line) {
    Launch& l = L();
    if (l.exited) fault("__syncthreads (line %d) after %d threads of the block exited: every thread must reach it", line, l.exited);
    if (l.barrier_arrived && l.barrier_line != line) {
        fault("waits at __syncthreads (line %d) while %d threads wait at the one on line %d", line, l.barrier_arrived, l.barrier_line);
    }
    Thread& t = me();
    if (l.warps[t.warp].arrived) {
        fault("reaches __syncthreads (line %d) while lanes 0x%08x of its warp wait at %s (line %d)", line, l.warps[t.warp].arrived,
              collective_name(l.warps[t.warp].kind), l.warps[t.warp].line);
    }
    l.barrier_line = line;
    t.state = State::barrier;
    if (++l.barrier_arrived == (int)l.threads.size()) {
        l.barrier_arrived = 0;
        l.epoch++;
        l.stats[BARRIERS]++;
        for (Warp& w : l.warps) count_bank_conflicts(w);
        for (Thread& other : l.threads) make_runnable(other.id);
    }
    yield();
}

// Arrive at a warp collective; the last lane of the mask completes it for all (`complete`).
template <typename Operands>
void warp_collective(Collective kind, int line, uint32_t mask, Operands* operands, void (*complete)(Warp&)) {
    Launch& l = L();
    Thread& t = me();
    Warp& w = l.warps[t.warp];
    const char* name = collective_name(kind);
    if (!(mask >> t.lane & 1)) fault("%s (line %d) with mask 0x%08x, which does not include the calling lane %d", name, line, mask, t.lane);
    if (mask & ~w.exists) fault("%s (line %d): mask 0x%08x names lanes this warp does not have (0x%08x)", name, line, mask, w.exists);
    if (mask & w.exited) fault("%s (line %d): lanes 0x%08x of its mask have exited", name, line, mask & w.exited);
    if (w.arrived == 0) {
        w.kind = kind;
        w.line = line;
        w.mask = mask;
    } else if (w.kind != kind || w.line != line) {
        fault("warp %d diverged: lanes 0x%08x wait at %s (line %d), lane %d reached %s (line %d)", t.warp, w.arrived, collective_name(w.kind), w.line, t.lane,
              name, line);
    } else if (w.mask != mask) {
        fault("%s (line %d): lane %d passes mask 0x%08x, the lanes waiting passed 0x%08x", name, line, t.lane, mask, w.mask);
    }
    w.operands[t.lane] = operands;
    w.arrived |= 1u << t.lane;
    t.state = State::warp;
    if (w.arrived == w.mask) {
        count_bank_conflicts(w);  // the lanes' shared accesses so far, before the collective's own
        complete(w);
        w.arrived = 0;
        w.kind = Collective::none;
        for (int lane = 0; lane < 32; ++lane) {
            if (w.mask >> lane & 1) make_runnable(t.warp * 32 + lane);
        }
    }
    yield();
}

struct ShflOperands {
    uint32_t value, lane_mask, result;
};

inline void complete_shfl(Warp& w) {
    for (int lane = 0; lane < 32; ++lane) {
        if (!(w.mask >> lane & 1)) continue;
        auto* mine = static_cast<ShflOperands*>(w.operands[lane]);
        const int source = lane ^ (int)(mine->lane_mask & 31);
        if (!(w.mask >> source & 1)) fault("__shfl_xor_sync (line %d): lane %d reads lane %d, which is not in the mask 0x%08x", w.line, lane, source, w.mask);
        mine->result = static_cast<ShflOperands*>(w.operands[source])->value;
    }
}

template <typename T>
T shfl_xor_sync(unsigned mask, T value, int lane_mask, int width, int line) {
    static_assert(sizeof(T) == 4, "32-bit shuffles only");
    if (width != 32) fault("__shfl_xor_sync with width %d: only 32 is modelled", width);
    ShflOperands operands{0, (uint32_t)lane_mask, 0};
    std::memcpy(&operands.value, &value, 4);
    warp_collective(Collective::shfl, line, mask, &operands, complete_shfl);
    T result;
    std::memcpy(&result, &operands.result, 4);
    return result;
}

template <typename T>
T atomic_add(gptr<T> address, T value) {
    T* p = address.checked(sizeof(T), true);
    const T old = *p;
    *p = old + value;  // one OS thread runs every fiber: this is atomic
    return old;
}

}  // namespace emu

inline void __syncthreads(int line = __builtin_LINE()) { emu::syncthreads(line); }

template <typename T>
inline T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32, int line = __builtin_LINE()) {
    return emu::shfl_xor_sync(mask, value, lane_mask, width, line);
}

template <typename T>
inline T atomicAdd(emu::gptr<T> address, T value) {
    return emu::atomic_add(address, value);
}

inline float __uint_as_float(unsigned bits) {
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

namespace emu {
namespace ptx {

// ---------------------------------------------------------------- cvt (PTX ISA 9.7.9.21)

// cvt.f32.f16: exact (every f16 is an f32).
inline float cvt_f32_f16(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ffu;
    uint32_t bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13);  // infinity, or NaN keeping its payload
    } else if (exponent) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa) {  // subnormal: m * 2^-24, exact in f32
        const float value = std::ldexp((float)mantissa, -24);
        std::memcpy(&bits, &value, 4);
        bits |= sign;
    } else {
        bits = sign;
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

// cvt.rn.f16.f32: round to nearest, ties to even; results beyond the f16 range round to
// infinity, f16 subnormals are produced (no .ftz), a NaN input gives the canonical NaN 0x7fff.
inline uint16_t cvt_rn_f16_f32(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    const uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    const uint32_t magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return 0x7fff;
    if (magnitude >= 0x47800000u) return sign | 0x7c00u;  // >= 65536 (and infinity): infinity
    const int exponent = (int)(magnitude >> 23) - 127;
    uint32_t mantissa = (magnitude & 0x7fffffu) | (magnitude >= 0x00800000u ? 0x800000u : 0);
    int shift;  // bits of the 24-bit significand dropped
    uint32_t result_exponent;
    if (exponent >= -14) {
        shift = 13;
        result_exponent = (uint32_t)(exponent + 15);
    } else {  // an f16 subnormal (or zero): the unit is 2^-24
        shift = 13 + (-14 - exponent);
        result_exponent = 0;
        if (magnitude < 0x00800000u) return sign;  // f32 subnormals are far below 2^-25
        if (shift > 24) return sign;                // below half the smallest subnormal
    }
    const uint32_t kept = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    uint32_t rounded = kept + (rest > half || (rest == half && (kept & 1)));
    uint32_t out;
    if (result_exponent == 0) {
        out = rounded;  // may carry into the smallest normal, which is the right encoding
    } else {
        out = (result_exponent << 10) + (rounded - 0x400u);  // a carry bumps the exponent, up to infinity
    }
    return sign | (uint16_t)out;
}

// cvt.rn.bf16.f32: round to nearest, ties to even; overflow to infinity; NaN gives 0x7fff.
inline uint16_t cvt_rn_bf16_f32(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

inline float bf16_to_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

// ---------------------------------------------------------------- cvta (PTX ISA 9.7.9.18)

template <typename T>
uint32_t cvta_to_shared(sptr<T> p) {
    p.array->touch();
    if ((p.offset) < 0 || (p.offset) > (long long)p.array->bytes) fault("cvta.to.shared of a pointer outside %s", p.array->describe().c_str());
    return p.array->base + (uint32_t)p.offset;
}

// ---------------------------------------------------------------- cp.async (PTX ISA 9.7.9.25)

// cp.async.{ca,cg}.shared.global [dst], [src], cp-size, src-size: src-size bytes are copied
// and the rest of cp-size is zero-filled. Nothing lands before a cp.async.wait_group that
// covers the copy's group: until then the destination keeps its old bytes.
template <typename T>
void cp_async(uint32_t dst, gptr<T> src, int cp_size, int src_size, bool cg) {
    if (cg && cp_size != 16) fault("cp.async.cg takes cp-size 16, got %d", cp_size);
    if (cp_size != 4 && cp_size != 8 && cp_size != 16) fault("cp.async cp-size must be 4, 8 or 16, got %d", cp_size);
    if (src_size < 0 || src_size > cp_size) fault("cp.async src-size %d outside [0, %d]", src_size, cp_size);
    if (dst % (uint32_t)cp_size) fault("cp.async destination %#x is not aligned to %d bytes", dst, cp_size);
    if (src_size > 0) check_global(src.address, src.region, (size_t)src_size, (size_t)cp_size, false);
    SharedArrayBase* array = resolve_shared(dst, (size_t)cp_size, "cp.async");
    const uint32_t offset = dst - array->base;
    Thread& t = me();
    array->on_write(offset, (size_t)cp_size, t.id, true);
    t.uncommitted.push_back({array, offset, src.address, cp_size, src_size});
    L().stats[CP_ASYNC]++;
}

// cp.async.commit_group (9.7.9.26): the thread's uncommitted copies become one group (maybe empty).
inline void cp_async_commit() {
    Thread& t = me();
    t.groups.push_back(std::move(t.uncommitted));
    t.uncommitted.clear();
}

// cp.async.wait_group N (9.7.9.27): all but the N most recent groups complete. Uncommitted
// copies are not waited for.
inline void cp_async_wait(int n) {
    Thread& t = me();
    Launch& l = L();
    while ((int)t.groups.size() > n) {
        for (const Copy& c : t.groups.front()) {
            unsigned char* dst = c.array->storage + c.offset;
            if (c.src_size) std::memcpy(dst, reinterpret_cast<const void*>(c.src), (size_t)c.src_size);
            std::memset(dst + c.src_size, 0, (size_t)(c.cp_size - c.src_size));
            for (int i = 0; i < c.cp_size; ++i) {
                Shadow& s = c.array->shadow[c.offset + i];
                s.pending = 0;
                s.writer = (uint16_t)(t.id + 1);
                s.write_epoch = l.epoch;
            }
        }
        t.groups.pop_front();
    }
}

// ---------------------------------------------------------------- ldmatrix (PTX ISA 9.7.14.5.15)

// ldmatrix.sync.aligned.m8n8.x4.shared.b16: lanes 8j..8j+7 give the addresses of rows 0..7 of
// matrix j (16 bytes each, 16-byte aligned); lane l receives in register j the two b16 at row
// l/4, columns 2(l%4) and 2(l%4)+1 of matrix j (the lower column in the lower half).
struct LdmatrixOperands {
    uint32_t address;
    uint32_t* out;
};

inline void complete_ldmatrix(Warp& w) {
    Launch& l = L();
    uint16_t rows[4][8][8];
    std::vector<std::pair<int, Access>> phase;
    for (int lane = 0; lane < 32; ++lane) {
        const uint32_t address = static_cast<LdmatrixOperands*>(w.operands[lane])->address;
        if (address % 16) fault("ldmatrix (line %d): lane %d gives shared address %#x, not 16-byte aligned", w.line, lane, address);
        SharedArrayBase* array = resolve_shared(address, 16, "ldmatrix row");
        const uint32_t offset = address - array->base;
        const int thread = (int)(&w - &l.warps[0]) * 32 + lane;
        array->on_read(offset, 16, thread);
        std::memcpy(rows[lane / 8][lane % 8], array->storage + offset, 16);
        phase.push_back({lane, Access{address, 16, false}});
    }
    uint64_t ideal = 0;
    l.stats[LDMATRIX_INSTRUCTIONS]++;
    l.stats[LDMATRIX_WAVEFRONTS] += wavefronts(phase, 8, &ideal);
    l.stats[LDMATRIX_IDEAL] += ideal;
    for (int lane = 0; lane < 32; ++lane) {
        uint32_t* out = static_cast<LdmatrixOperands*>(w.operands[lane])->out;
        for (int j = 0; j < 4; ++j) {
            out[j] = (uint32_t)rows[j][lane / 4][2 * (lane % 4)] | ((uint32_t)rows[j][lane / 4][2 * (lane % 4) + 1] << 16);
        }
    }
}

inline void ldmatrix_x4(uint32_t* out, uint32_t address, int line) {
    LdmatrixOperands operands{address, out};
    warp_collective(Collective::ldmatrix, line, 0xffffffffu, &operands, complete_ldmatrix);
}

// ---------------------------------------------------------------- mma.sp (PTX ISA 9.7.14.6)

// mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.{f16,bf16}.{f16,bf16}.f32,
// fragments per "Matrix fragments for sparse mma.m16n8k32 with .f16/.bf16" (9.7.14.6.x):
// groupID g = lane/4, t = lane%4.
// - A (16 x 16 compressed, 4 x .b32 = a0..a7): ai at row g + 8 * ((i / 2) % 2), column
//   2t + (i % 2) + 8 * (i / 4).
// - B (32 x 8, 4 x .b32 = b0..b7): bi at row (k) 2t + (i % 2) + 8 * (i / 2), column g.
// - C, D (16 x 8 f32, c0..c3): ci at row g + 8 * (i / 2), column 2t + (i % 2).
// - Metadata: with sparsity selector s, lanes 4g + 2s + j (j = 0, 1) supply it: bits 0-15 for
//   row g and bits 16-31 for row g + 8, covering dense columns 16j .. 16j + 15, one nibble per
//   group of 4 (bits 0-1 the index of the first kept element, bits 2-3 the second). The other
//   lanes' metadata is not read. With ordered_metadata the two indices must increase; equal or
//   decreasing indices are undefined (an error here), so valid nibbles are 4, 8, 9, c, d, e.
struct MmaOperands {
    float* d;
    const uint32_t* a;
    const uint32_t* b;
    uint32_t e;
    int selector;
    bool bf16;
};

inline float half_value(uint16_t bits, bool bf16) { return bf16 ? bf16_to_f32(bits) : cvt_f32_f16(bits); }

inline void complete_mma_sp(Warp& w) {
    auto ops = [&](int lane) { return static_cast<MmaOperands*>(w.operands[lane]); };
    const bool bf16 = ops(0)->bf16;
    const int selector = ops(0)->selector;
    for (int lane = 1; lane < 32; ++lane) {
        if (ops(lane)->bf16 != bf16 || ops(lane)->selector != selector) fault("mma.sp (line %d): lanes disagree on the type or the sparsity selector", w.line);
    }
    if (selector != 0 && selector != 1) fault("mma.sp m16n8k32 (line %d): sparsity selector must be 0 or 1, got %d", w.line, selector);
    float a[16][32] = {}, b[32][8], c[16][8];
    float compressed[16][16];
    for (int lane = 0; lane < 32; ++lane) {
        const int g = lane / 4, t = lane % 4;
        for (int i = 0; i < 8; ++i) {
            const uint16_t av = (uint16_t)(ops(lane)->a[i / 2] >> (16 * (i % 2)));
            compressed[g + 8 * ((i / 2) % 2)][2 * t + (i % 2) + 8 * (i / 4)] = half_value(av, bf16);
            const uint16_t bv = (uint16_t)(ops(lane)->b[i / 2] >> (16 * (i % 2)));
            b[2 * t + (i % 2) + 8 * (i / 2)][g] = half_value(bv, bf16);
        }
        for (int i = 0; i < 4; ++i) c[g + 8 * (i / 2)][2 * t + (i % 2)] = ops(lane)->d[i];
    }
    for (int row = 0; row < 16; ++row) {
        for (int group = 0; group < 8; ++group) {
            const int j = group / 4, q = group % 4;
            const int lane = 4 * (row % 8) + 2 * selector + j;
            const uint32_t nibble = (ops(lane)->e >> (16 * (row / 8) + 4 * q)) & 0xfu;
            const int first = (int)(nibble & 3u), second = (int)(nibble >> 2);
            if (first >= second) {
                fault("mma.sp (line %d): metadata nibble %#x (lane %d, bits %d-%d) for row %d, columns %d-%d: the indices must increase "
                      "(ordered_metadata); %s is undefined",
                      w.line, nibble, lane, 16 * (row / 8) + 4 * q, 16 * (row / 8) + 4 * q + 3, row, 4 * group, 4 * group + 3,
                      first == second ? "an equal pair" : "a decreasing pair");
            }
            a[row][4 * group + first] = compressed[row][2 * group];
            a[row][4 * group + second] = compressed[row][2 * group + 1];
        }
    }
    for (int lane = 0; lane < 32; ++lane) {
        const int g = lane / 4, t = lane % 4;
        for (int i = 0; i < 4; ++i) {
            const int row = g + 8 * (i / 2), col = 2 * t + (i % 2);
            float sum = c[row][col];
            for (int k = 0; k < 32; ++k) sum += a[row][k] * b[k][col];
            ops(lane)->d[i] = sum;
        }
    }
    L().stats[MMA_SP]++;
}

inline void mma_sp_m16n8k32(float* d, const uint32_t* a, const uint32_t* b, uint32_t e, int selector, bool bf16, int line) {
    MmaOperands operands{d, a, b, e, selector, bf16};
    warp_collective(Collective::mma_sp, line, 0xffffffffu, &operands, complete_mma_sp);
}

}  // namespace ptx
}  // namespace emu

#endif  // SPARSE24_DISCOVER
