// yolo_segment.h: the workbook's instance-segmentation decode in C++ (header only, C++11, no rknn or image library).
//
// It mirrors helpers/tasks/segment/postprocess.py (shipped in the bundle as postprocess_segment.py) for the split head:
// per stride four outputs, box [1, 4*reg_max, h, w], cls [1, C, h, w], sum [1, 1, h, w] and the mask coefficients
// coef [1, nm, h, w], strides ascending, then the prototypes [1, nm, H/4, W/4].
//   1. boxes, scores and the selection are the detector's (yolo_detect.h: select, per-class NMS or end2end top-k);
//   2. each kept box's mask: its anchor's nm coefficients x the prototypes -> logits at H/4 x W/4, upsampled
//      bilinearly (as cv2.resize INTER_LINEAR on float) to the letterboxed input, the padding cut off, resized to the
//      original image, sigmoid > threshold (logit > log(t / (1 - t))), zeroed outside the box (original pixels).
// tests/test_deploy_segment_pose.py compiles it into tests/cpp/instance_harness.cc and checks boxes, scores, classes
// and each mask (IoU > 0.99) against postprocess_segment.py on the same raw outputs.
#ifndef WORKBOOK_YOLO_SEGMENT_H
#define WORKBOOK_YOLO_SEGMENT_H

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "yolo_detect.h"

namespace workbook {

// One instance: its detection (original pixels) and its mask, height x width of the original image, 1 = object.
struct Instance {
    Detection box;
    std::vector<uint8_t> mask;
    size_t area;  // pixels set in mask
};

// Throws std::invalid_argument unless the outputs are the split segmentation head: 4 per stride, then the prototypes.
inline void require_split_segment(const std::vector<Output>& outputs) {
    if (outputs.size() == 2)
        throw std::invalid_argument("the model has the stock segmentation head (boxes, class scores and mask coefficients in "
                                    "one output), whose INT8 class scores collapse to 0 on the NPU; export it with head: split "
                                    "in notebook 10 and convert again");
    if (outputs.size() < 5 || (outputs.size() - 1) % 4 != 0)
        throw std::invalid_argument("the model gave " + std::to_string(outputs.size()) + " outputs; a split-head segmentation "
                                    "model gives 4 per stride (box, class scores, score sum, mask coefficients), then the "
                                    "prototypes");
}

// Bilinear resize of one float plane as cv2.resize(INTER_LINEAR) does for float32: half-pixel centres, edges clamped,
// float weights; an exact 2x reduction averages 2x2 blocks (OpenCV switches to INTER_AREA there); same size: a copy.
inline std::vector<float> resize_plane(const std::vector<float>& src, int sw, int sh, int dw, int dh) {
    if (sw == dw && sh == dh) return src;
    std::vector<float> dst(static_cast<size_t>(dw) * dh);
    if (sw == 2 * dw && sh == 2 * dh) {
        for (int y = 0; y < dh; ++y)
            for (int x = 0; x < dw; ++x) {
                const float* a = &src[(static_cast<size_t>(2 * y) * sw) + 2 * x];
                dst[static_cast<size_t>(y) * dw + x] = (a[0] + a[1] + a[sw] + a[sw + 1]) * 0.25f;
            }
        return dst;
    }
    double scale_x = 1.0 / (static_cast<double>(dw) / sw), scale_y = 1.0 / (static_cast<double>(dh) / sh);
    std::vector<int> xofs(dw);
    std::vector<float> ax(dw);
    for (int x = 0; x < dw; ++x) {
        float f = static_cast<float>((x + 0.5) * scale_x - 0.5);
        int sx = static_cast<int>(std::floor(f));
        f -= sx;
        if (sx < 0) f = 0, sx = 0;
        if (sx >= sw - 1) f = 0, sx = sw - 1;
        xofs[x] = sx;
        ax[x] = f;
    }
    std::vector<float> row0(dw), row1(dw);
    for (int y = 0; y < dh; ++y) {
        float f = static_cast<float>((y + 0.5) * scale_y - 0.5);
        int sy = static_cast<int>(std::floor(f));
        f -= sy;
        if (sy < 0) f = 0, sy = 0;
        if (sy >= sh - 1) f = 0, sy = sh - 1;
        const int rows[2] = {sy, std::min(sy + 1, sh - 1)};
        for (int r = 0; r < 2; ++r) {
            const float* s = &src[static_cast<size_t>(rows[r]) * sw];
            std::vector<float>& out = r ? row1 : row0;
            for (int x = 0; x < dw; ++x) {
                int sx = xofs[x];
                out[x] = sx + 1 < sw ? s[sx] * (1.0f - ax[x]) + s[sx + 1] * ax[x] : s[sx];
            }
        }
        for (int x = 0; x < dw; ++x) dst[static_cast<size_t>(y) * dw + x] = row0[x] * (1.0f - f) + row1[x] * f;
    }
    return dst;
}

// One instance's mask in original image pixels from its nm coefficients and the prototypes [nm, ph, pw]: logits,
// upsampled to the letterboxed input, the padding cut off, resized to the image, logit > log(t / (1 - t)), in the box.
inline std::vector<uint8_t> assemble_mask(const float* coefs, const Output& protos, const Detection& box, const Letterbox& lb,
                                          float threshold, size_t& area) {
    size_t plane = static_cast<size_t>(protos.height) * protos.width;
    std::vector<float> logits(plane, 0.0f);
    for (int k = 0; k < protos.channels; ++k) {
        const float* p = &protos.data[k * plane];
        for (size_t i = 0; i < plane; ++i) logits[i] += coefs[k] * p[i];
    }
    std::vector<float> input = resize_plane(logits, protos.width, protos.height, lb.size, lb.size);
    std::vector<float> content(static_cast<size_t>(lb.new_width) * lb.new_height);
    for (int y = 0; y < lb.new_height; ++y)
        std::copy(&input[static_cast<size_t>(y + lb.top) * lb.size + lb.left],
                  &input[static_cast<size_t>(y + lb.top) * lb.size + lb.left] + lb.new_width, &content[static_cast<size_t>(y) * lb.new_width]);
    std::vector<float> image = resize_plane(content, lb.new_width, lb.new_height, lb.width, lb.height);
    float cut = static_cast<float>(std::log(threshold / (1.0 - threshold)));
    std::vector<uint8_t> mask(image.size(), 0);
    area = 0;
    for (int y = 0; y < lb.height; ++y)
        for (int x = 0; x < lb.width; ++x) {
            float fx = static_cast<float>(x), fy = static_cast<float>(y);
            size_t i = static_cast<size_t>(y) * lb.width + x;
            if (image[i] > cut && fx >= box.x1 && fx < box.x2 && fy >= box.y1 && fy < box.y2) mask[i] = 1, ++area;
        }
    return mask;
}

// Raw split-head outputs of one image -> instances in original image pixels, best first, selected exactly as the
// detector's decode (conf, per-class NMS or end2end top-k, max_det), each with its mask.
inline std::vector<Instance> postprocess_segment(const std::vector<Output>& outputs, const Letterbox& lb, float conf = 0.25f,
                                                 float iou = 0.7f, size_t max_det = 300, size_t max_nms = 30000,
                                                 bool end2end = false, float mask_threshold = 0.5f) {
    require_split_segment(outputs);
    const Output& protos = outputs.back();
    std::vector<Detection> kept = select(outputs, 4, (outputs.size() - 1) / 4, lb, conf, iou, max_det, max_nms, end2end);
    std::vector<Instance> out;
    for (size_t i = 0; i < kept.size(); ++i) {
        const Output& coef = outputs[kept[i].group + 3];
        if (coef.channels != protos.channels)
            throw std::invalid_argument("the mask coefficients have " + std::to_string(coef.channels) + " channels but the "
                                        "prototypes " + std::to_string(protos.channels) + "; pass the model's own outputs");
        size_t hw = static_cast<size_t>(coef.height) * coef.width;
        std::vector<float> c(coef.channels);
        for (int k = 0; k < coef.channels; ++k) c[k] = coef.data[k * hw + kept[i].cell];
        Instance inst;
        inst.box = kept[i];
        inst.mask = assemble_mask(c.data(), protos, kept[i], lb, mask_threshold, inst.area);
        out.push_back(inst);
    }
    return out;
}

}  // namespace workbook

#endif
