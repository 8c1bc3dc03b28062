// Test support (not shipped): the raw-output dump that tests/raw_outputs.py writes, read back for the decode harnesses
// (decode_harness.cc, instance_harness.cc), so both parse the manifest and dequantize in one place.
// Per output, one manifest line "channels height width dtype zero_point scale file", dtype f32 (float32) or i8 (int8,
// dequantized here with yolo_detect.h's dequantize, the arithmetic the board's demos use).
#ifndef WORKBOOK_TESTS_RAW_MANIFEST_H
#define WORKBOOK_TESTS_RAW_MANIFEST_H

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <istream>
#include <stdexcept>
#include <string>
#include <vector>

#include "yolo_detect.h"

// A raw little-endian file of n values of type T.
template <typename T>
inline std::vector<T> read_raw(const std::string& path, size_t n) {
    std::vector<T> v(n);
    std::ifstream in(path.c_str(), std::ios::binary);
    in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(T)));
    if (static_cast<size_t>(in.gcount()) != n * sizeof(T)) throw std::runtime_error("short file " + path);
    return v;
}

// The next n output lines of the manifest m and their files, as float outputs (int8 ones dequantized).
inline std::vector<workbook::Output> read_outputs(std::istream& m, size_t n) {
    std::vector<workbook::Output> outputs;
    for (size_t i = 0; i < n; ++i) {
        workbook::Output o;
        std::string dtype, file;
        int zp;
        float scale;
        m >> o.channels >> o.height >> o.width >> dtype >> zp >> scale >> file;
        size_t count = static_cast<size_t>(o.channels) * o.height * o.width;
        if (dtype == "i8") {
            std::vector<int8_t> q = read_raw<int8_t>(file, count);
            o.data = workbook::dequantize(q.data(), count, zp, scale);
        } else {
            o.data = read_raw<float>(file, count);
        }
        outputs.push_back(o);
    }
    return outputs;
}

#endif  // WORKBOOK_TESTS_RAW_MANIFEST_H
