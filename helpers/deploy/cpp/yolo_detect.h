// yolo_detect.h: the workbook's detector decode in C++ (header only, C++11, no rknn or image library).
//
// It mirrors helpers/detect/postprocess.py, the decode the workbook measured mAP with and the Python
// runner ships byte for byte, for the split head: per stride three outputs, box regression
// [1, 4*reg_max, H, W] (distribution logits, or with reg_max == 1 plain distances), class scores
// [1, C, H, W] and their clamped sum [1, 1, H, W].
//   1. letterbox: scale to fit size x size (bilinear, as cv2.resize), aspect kept, grey padding split evenly.
//   2. dequantize: int8 -> float with the output's zero point and scale (rknn_query's output attr).
//   3. decode: cells whose score sum reaches conf; their best class above conf; each side of the box
//      is the expectation of a softmax over reg_max bins (reg_max == 1: the value itself), in stride
//      units from the cell centre.
//   4. per-class greedy NMS (a box overlapping a better one of its class by IoU > iou is dropped),
//      best first, at most max_det, boxes mapped back to the original image and clipped to it.
//      An end-to-end head (YOLO26, YOLOv10: one-to-one, no NMS) instead takes ultralytics' top-k:
//      the max_det anchors with the best class score, then the max_det best (anchor, class) pairs
//      among them, scores above conf (end2end = true).
// Steps 3-4 are `select`, which also serves yolo_segment.h and yolo_pose.h (4 outputs per stride there): each kept
// detection remembers its anchor (group, cell), where those read the mask coefficients or keypoints.
// tests/test_deploy_detect.py compiles this header into a small harness and checks its boxes against
// postprocess.py on the same raw outputs.
#ifndef WORKBOOK_YOLO_DETECT_H
#define WORKBOOK_YOLO_DETECT_H

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace workbook {

const int PAD_VALUE = 114;  // ultralytics' letterbox grey

// How an image of height x width was scaled by `scale` and padded (left, top) into size x size.
struct Letterbox {
    int height, width, size;
    double scale;
    int left, top, new_width, new_height;
};

// One output tensor of one image, NCHW without the batch dimension, as float.
struct Output {
    std::vector<float> data;
    int channels, height, width;
};

// One detection in original image pixels, with the anchor it came from: `group`, the index of its stride's first
// output (the box regression), and `cell`, its cell in that stride's map (segment and pose read the mask
// coefficients or keypoints there).
struct Detection {
    float x1, y1, x2, y2, score;
    int cls;
    int group, cell;
};

// Python's round(): halves go to the even neighbour (std::nearbyint in the default rounding mode).
inline int round_half_even(double v) { return static_cast<int>(std::nearbyint(v)); }

// The letterbox of an image into size x size, with postprocess.letterbox_geometry's rounding.
inline Letterbox letterbox_geometry(int height, int width, int size) {
    double scale = std::min(static_cast<double>(size) / height, static_cast<double>(size) / width);
    int new_w = round_half_even(width * scale), new_h = round_half_even(height * scale);
    double dw = (size - new_w) / 2.0, dh = (size - new_h) / 2.0;
    Letterbox lb = {height, width, size, scale, round_half_even(dw - 0.1), round_half_even(dh - 0.1), new_w, new_h};
    return lb;
}

// Destination pixel d of a bilinear resize along one axis of source length s: the first source pixel it
// reads (edges clamped) and its two 11-bit fixed-point weights, as cv2.resize(INTER_LINEAR) computes them.
inline void bilinear_tap(int d, double scale, int s, int& index, int& w0, int& w1) {
    const int ONE = 2048;
    float f = static_cast<float>((d + 0.5) * scale - 0.5);
    index = static_cast<int>(std::floor(f));
    f -= index;
    if (index < 0) f = 0, index = 0;
    if (index >= s - 1) f = 0, index = s - 1;
    w0 = static_cast<int>(std::nearbyint((1.0f - f) * ONE));
    w1 = static_cast<int>(std::nearbyint(f * ONE));
}

// Bilinear resize of interleaved uint8 pixels as OpenCV's cv2.resize(INTER_LINEAR) does it (what
// postprocess.letterbox calls): half-pixel centres, edges clamped, 11-bit fixed-point weights and the
// rounding of its vectorised path; an exact 2x reduction averages 2x2 blocks, as OpenCV switches to
// INTER_AREA there. Measured against OpenCV 4 on x86: identical when shrinking, at most 1 level apart
// on a few pixels when enlarging.
inline void resize_bilinear(const uint8_t* src, int sw, int sh, uint8_t* dst, int dw, int dh, int ch) {
    if (sw == 2 * dw && sh == 2 * dh) {
        for (int y = 0; y < dh; ++y)
            for (int x = 0; x < dw; ++x)
                for (int c = 0; c < ch; ++c) {
                    const uint8_t* a = src + (static_cast<size_t>(2 * y) * sw + 2 * x) * ch + c;
                    const uint8_t* b = a + static_cast<size_t>(sw) * ch;
                    dst[(static_cast<size_t>(y) * dw + x) * ch + c] = static_cast<uint8_t>((a[0] + a[ch] + b[0] + b[ch] + 2) >> 2);
                }
        return;
    }
    double scale_x = 1.0 / (static_cast<double>(dw) / sw), scale_y = 1.0 / (static_cast<double>(dh) / sh);
    std::vector<int> xofs(dw), ax(2 * dw);
    for (int x = 0; x < dw; ++x) bilinear_tap(x, scale_x, sw, xofs[x], ax[2 * x], ax[2 * x + 1]);
    std::vector<int> row0(static_cast<size_t>(dw) * ch), row1(static_cast<size_t>(dw) * ch);
    for (int y = 0; y < dh; ++y) {
        int sy, b0, b1;
        bilinear_tap(y, scale_y, sh, sy, b0, b1);
        const int rows[2] = {sy, std::min(sy + 1, sh - 1)};
        for (int r = 0; r < 2; ++r) {
            const uint8_t* s = src + static_cast<size_t>(rows[r]) * sw * ch;
            std::vector<int>& out = r ? row1 : row0;
            for (int x = 0; x < dw; ++x)
                for (int c = 0; c < ch; ++c) {
                    int sx = xofs[x];
                    int right = sx + 1 < sw ? s[(sx + 1) * ch + c] * ax[2 * x + 1] : 0;
                    out[static_cast<size_t>(x) * ch + c] = s[sx * ch + c] * ax[2 * x] + right;
                }
        }
        for (size_t i = 0; i < row0.size(); ++i) {
            int v = (((b0 * (row0[i] >> 4)) >> 16) + ((b1 * (row1[i] >> 4)) >> 16) + 2) >> 2;
            dst[static_cast<size_t>(y) * dw * ch + i] = static_cast<uint8_t>(std::min(std::max(v, 0), 255));
        }
    }
}

// An RGB image (height x width x 3, uint8) letterboxed into a size x size canvas with grey padding, as
// postprocess.letterbox; returns the geometry that unletterbox inverts.
inline Letterbox letterbox(const uint8_t* rgb, int height, int width, int size, std::vector<uint8_t>& canvas) {
    Letterbox lb = letterbox_geometry(height, width, size);
    std::vector<uint8_t> resized;
    const uint8_t* src = rgb;
    if (lb.new_width != width || lb.new_height != height) {
        resized.resize(static_cast<size_t>(lb.new_width) * lb.new_height * 3);
        resize_bilinear(rgb, width, height, resized.data(), lb.new_width, lb.new_height, 3);
        src = resized.data();
    }
    canvas.assign(static_cast<size_t>(size) * size * 3, static_cast<uint8_t>(PAD_VALUE));
    for (int y = 0; y < lb.new_height; ++y)
        std::copy(src + static_cast<size_t>(y) * lb.new_width * 3, src + static_cast<size_t>(y + 1) * lb.new_width * 3,
                  canvas.begin() + (static_cast<size_t>(y + lb.top) * size + lb.left) * 3);
    return lb;
}

// int8 values of an affine-quantized output as float: (q - zero_point) * scale.
inline std::vector<float> dequantize(const int8_t* q, size_t n, int32_t zero_point, float scale) {
    std::vector<float> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = (static_cast<float>(q[i]) - static_cast<float>(zero_point)) * scale;
    return out;
}

// Intersection over union of two xyxy boxes.
inline float box_iou(const Detection& a, const Detection& b) {
    float ix = std::max(std::min(a.x2, b.x2) - std::max(a.x1, b.x1), 0.0f);
    float iy = std::max(std::min(a.y2, b.y2) - std::max(a.y1, b.y1), 0.0f);
    float inter = ix * iy;
    float areas = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1);
    return inter / std::max(areas - inter, 1e-9f);
}

// Throws std::invalid_argument unless the outputs are the split head's three tensors per stride.
inline void require_split(const std::vector<Output>& outputs) {
    if (outputs.size() == 1)
        throw std::invalid_argument("the model has the stock detector head (one output mixing box pixels and class scores), whose "
                                    "INT8 class scores collapse to 0 on the NPU; export it with head: split in notebook 10 and convert again");
    if (outputs.empty() || outputs.size() % 3 != 0)
        throw std::invalid_argument("the model gave " + std::to_string(outputs.size()) + " outputs; a split-head detector gives 3 per "
                                    "stride (box distribution, class scores, score sum)");
}

// Side distances (left, top, right, bottom) of one cell in stride units: softmax expectation per side
// (reg_max == 1: the regressed distance itself).
inline void dfl_sides(const Output& box, int cell, float sides[4]) {
    int reg_max = box.channels / 4, hw = box.height * box.width;
    if (reg_max == 1) {
        for (int k = 0; k < 4; ++k) sides[k] = box.data[static_cast<size_t>(k) * hw + cell];
        return;
    }
    for (int k = 0; k < 4; ++k) {
        const float* logits = &box.data[0] + static_cast<size_t>(k) * reg_max * hw + cell;
        float top = logits[0];
        for (int j = 1; j < reg_max; ++j) top = std::max(top, logits[static_cast<size_t>(j) * hw]);
        float total = 0.0f, weighted = 0.0f;
        for (int j = 0; j < reg_max; ++j) {
            float e = std::exp(logits[static_cast<size_t>(j) * hw] - top);
            total += e;
            weighted += e * static_cast<float>(j);
        }
        sides[k] = weighted / total;
    }
}

// The box of one cell of one stride, xyxy in input (letterboxed) pixels.
inline Detection cell_box(const Output& box, int cell, int input_size, float score, int cls, int group = 0) {
    int stride = input_size / box.width;
    float sides[4];
    dfl_sides(box, cell, sides);
    float cx = static_cast<float>(cell % box.width) + 0.5f, cy = static_cast<float>(cell / box.width) + 0.5f;
    Detection d = {(cx - sides[0]) * stride, (cy - sides[1]) * stride, (cx + sides[2]) * stride, (cy + sides[3]) * stride,
                   score, cls, group, cell};
    return d;
}

// Candidates of one stride: cells whose score sum reaches conf and whose best class score exceeds it,
// boxes xyxy in input (letterboxed) pixels.
inline void decode_stride(const Output& box, const Output& cls, const Output& sum, int input_size, float conf,
                          std::vector<Detection>& out, int group = 0) {
    int hw = box.height * box.width;
    for (int cell = 0; cell < hw; ++cell) {
        if (sum.data[cell] < conf) continue;
        int best = 0;
        float score = cls.data[cell];
        for (int c = 1; c < cls.channels; ++c) {
            float s = cls.data[static_cast<size_t>(c) * hw + cell];
            if (s > score) { score = s; best = c; }
        }
        if (!(score > conf)) continue;
        out.push_back(cell_box(box, cell, input_size, score, best, group));
    }
}

// Greedy NMS within one class: indices into `dets` (all of that class) kept, best score first.
inline std::vector<size_t> nms(const std::vector<Detection>& dets, const std::vector<size_t>& members, float iou) {
    std::vector<size_t> order(members);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return dets[a].score > dets[b].score; });
    std::vector<size_t> keep;
    std::vector<bool> gone(order.size(), false);
    for (size_t i = 0; i < order.size(); ++i) {
        if (gone[i]) continue;
        keep.push_back(order[i]);
        for (size_t j = i + 1; j < order.size(); ++j)
            if (!gone[j] && box_iou(dets[order[i]], dets[order[j]]) > iou) gone[j] = true;
    }
    return keep;
}

// A box from letterboxed input pixels back to the original image, clipped to it.
inline Detection unletterbox(Detection d, const Letterbox& lb) {
    float scale = static_cast<float>(lb.scale);
    d.x1 = std::min(std::max((d.x1 - lb.left) / scale, 0.0f), static_cast<float>(lb.width));
    d.x2 = std::min(std::max((d.x2 - lb.left) / scale, 0.0f), static_cast<float>(lb.width));
    d.y1 = std::min(std::max((d.y1 - lb.top) / scale, 0.0f), static_cast<float>(lb.height));
    d.y2 = std::min(std::max((d.y2 - lb.top) / scale, 0.0f), static_cast<float>(lb.height));
    return d;
}

// An end-to-end head's selection, as postprocess.topk: cells whose score sum reaches conf, the k with the best
// class score, then the k best (cell, class) pairs among them (stable: ties keep their order), scores above conf;
// k = min(max_det, all cells). Boxes in input pixels, best first. The split head's box, cls and sum come first in
// each stride's `per_stride` outputs (3 for a detector; 4 for segment and pose, whose fourth is coefficients or
// keypoints), for the first `groups` strides.
inline std::vector<Detection> topk_select(const std::vector<Output>& outputs, int input_size, float conf, size_t max_det,
                                          size_t per_stride = 3, size_t groups = 0) {
    struct Cell { size_t out; int cell; float best; };
    std::vector<Cell> cells;
    size_t total = 0;
    if (groups == 0) groups = outputs.size() / per_stride;
    for (size_t i = 0; i < groups * per_stride; i += per_stride) {
        const Output& cls = outputs[i + 1];
        int hw = cls.height * cls.width;
        total += static_cast<size_t>(hw);
        for (int cell = 0; cell < hw; ++cell) {
            if (outputs[i + 2].data[cell] < conf) continue;
            float best = cls.data[cell];
            for (int c = 1; c < cls.channels; ++c) best = std::max(best, cls.data[static_cast<size_t>(c) * hw + cell]);
            Cell x = {i, cell, best};
            cells.push_back(x);
        }
    }
    size_t k = std::min(max_det, total);
    std::stable_sort(cells.begin(), cells.end(), [](const Cell& a, const Cell& b) { return a.best > b.best; });
    if (cells.size() > k) cells.resize(k);
    struct Pair { size_t cell; int cls; float score; };
    std::vector<Pair> pairs;
    for (size_t j = 0; j < cells.size(); ++j) {
        const Output& cls = outputs[cells[j].out + 1];
        size_t hw = static_cast<size_t>(cls.height) * cls.width;
        for (int c = 0; c < cls.channels; ++c) {
            Pair p = {j, c, cls.data[c * hw + cells[j].cell]};
            pairs.push_back(p);
        }
    }
    std::stable_sort(pairs.begin(), pairs.end(), [](const Pair& a, const Pair& b) { return a.score > b.score; });
    if (pairs.size() > k) pairs.resize(k);
    std::vector<Detection> out;
    for (size_t j = 0; j < pairs.size(); ++j) {
        if (!(pairs[j].score > conf)) continue;
        const Cell& c = cells[pairs[j].cell];
        out.push_back(cell_box(outputs[c.out], c.cell, input_size, pairs[j].score, pairs[j].cls, static_cast<int>(c.out)));
    }
    return out;
}

// The detection rule on split-head outputs (`per_stride` per stride, box, cls and sum first, `groups` strides):
// detections in original image pixels, best first, each with its anchor (group, cell); end2end: top-k, no NMS.
// postprocess (the detector), yolo_segment.h and yolo_pose.h all select through it.
inline std::vector<Detection> select(const std::vector<Output>& outputs, size_t per_stride, size_t groups, const Letterbox& lb,
                                     float conf, float iou, size_t max_det, size_t max_nms, bool end2end) {
    if (end2end) {
        std::vector<Detection> kept = topk_select(outputs, lb.size, conf, max_det, per_stride, groups);
        for (size_t i = 0; i < kept.size(); ++i) kept[i] = unletterbox(kept[i], lb);
        return kept;
    }
    std::vector<Detection> cand;
    for (size_t i = 0; i < groups * per_stride; i += per_stride)
        decode_stride(outputs[i], outputs[i + 1], outputs[i + 2], lb.size, conf, cand, static_cast<int>(i));
    if (cand.size() > max_nms) {
        std::stable_sort(cand.begin(), cand.end(), [](const Detection& a, const Detection& b) { return a.score > b.score; });
        cand.resize(max_nms);
    }
    int classes = 0;
    for (size_t i = 0; i < cand.size(); ++i) classes = std::max(classes, cand[i].cls + 1);
    std::vector<Detection> kept;
    for (int c = 0; c < classes; ++c) {
        std::vector<size_t> members;
        for (size_t i = 0; i < cand.size(); ++i)
            if (cand[i].cls == c) members.push_back(i);
        std::vector<size_t> keep = nms(cand, members, iou);
        for (size_t k = 0; k < keep.size(); ++k) kept.push_back(cand[keep[k]]);
    }
    std::stable_sort(kept.begin(), kept.end(), [](const Detection& a, const Detection& b) { return a.score > b.score; });
    if (kept.size() > max_det) kept.resize(max_det);
    for (size_t i = 0; i < kept.size(); ++i) kept[i] = unletterbox(kept[i], lb);
    return kept;
}

// Raw split-head outputs of one image -> detections in original image pixels, best first; end2end: top-k, no NMS.
inline std::vector<Detection> postprocess(const std::vector<Output>& outputs, const Letterbox& lb, float conf = 0.25f,
                                          float iou = 0.7f, size_t max_det = 300, size_t max_nms = 30000, bool end2end = false) {
    require_split(outputs);
    return select(outputs, 3, outputs.size() / 3, lb, conf, iou, max_det, max_nms, end2end);
}

}  // namespace workbook

#endif
