// yolo_pose.h: the workbook's pose decode in C++ (header only, C++11, no rknn or image library).
//
// It mirrors helpers/tasks/pose/postprocess.py (shipped in the bundle as postprocess_pose.py) for the split head: per
// stride four outputs, strides ascending: box [1, 4*reg_max, h, w], cls [1, C, h, w], sum [1, 1, h, w] and the
// keypoints kpt [1, K*ndim, h, w] (per keypoint dx, dy: the offset from its cell's top-left corner in stride units,
// then with ndim 3 the sigmoid visibility).
//   1. boxes, scores and the selection are the detector's (yolo_detect.h: select, per-class NMS or end2end top-k);
//   2. each kept box's keypoints, read at its anchor: x = (dx + column) * stride, y = (dy + row) * stride in input
//      pixels, mapped back to the original image and clipped to it; the visibility score kept (1 when ndim is 2).
// tests/test_deploy_segment_pose.py compiles it into tests/cpp/instance_harness.cc and checks boxes, scores, classes
// and every keypoint (within 0.01 px) against postprocess_pose.py on the same raw outputs.
#ifndef WORKBOOK_YOLO_POSE_H
#define WORKBOOK_YOLO_POSE_H

#include <stdexcept>
#include <string>
#include <vector>

#include "yolo_detect.h"

namespace workbook {

// One pose: its detection (original pixels) and K keypoints as x, y (original pixels), visibility score.
struct Pose {
    Detection box;
    std::vector<float> keypoints;  // K x 3
};

// Throws std::invalid_argument unless the outputs are the split pose head (4 per stride) with K*ndim keypoint channels.
inline void require_split_pose(const std::vector<Output>& outputs, int keypoints, int ndim) {
    if (outputs.size() == 1)
        throw std::invalid_argument("the model has the stock pose head (boxes, class scores and keypoints in one output), "
                                    "whose INT8 class scores collapse to 0 on the NPU; export it with head: split in "
                                    "notebook 10 and convert again");
    if (outputs.empty() || outputs.size() % 4 != 0)
        throw std::invalid_argument("the model gave " + std::to_string(outputs.size()) + " outputs; a split-head pose model "
                                    "gives 4 per stride (box, class scores, score sum, keypoints)");
    for (size_t i = 3; i < outputs.size(); i += 4)
        if (outputs[i].channels != keypoints * ndim)
            throw std::invalid_argument("the keypoint output has " + std::to_string(outputs[i].channels) + " channels, not " +
                                        std::to_string(keypoints) + "x" + std::to_string(ndim) + "; pass the model's own "
                                        "kpt_shape (model.json)");
}

// Raw split-head outputs of one image -> poses in original image pixels, best first, selected exactly as the detector's
// decode (conf, per-class NMS or end2end top-k, max_det), each with its anchor's keypoints.
inline std::vector<Pose> postprocess_pose(const std::vector<Output>& outputs, const Letterbox& lb, int keypoints, int ndim,
                                          float conf = 0.25f, float iou = 0.7f, size_t max_det = 300, size_t max_nms = 30000,
                                          bool end2end = false) {
    require_split_pose(outputs, keypoints, ndim);
    std::vector<Detection> kept = select(outputs, 4, outputs.size() / 4, lb, conf, iou, max_det, max_nms, end2end);
    float scale = static_cast<float>(lb.scale);
    std::vector<Pose> out;
    for (size_t i = 0; i < kept.size(); ++i) {
        const Output& kpt = outputs[kept[i].group + 3];
        size_t hw = static_cast<size_t>(kpt.height) * kpt.width;
        int stride = lb.size / kpt.width, cell = kept[i].cell;
        float col = static_cast<float>(cell % kpt.width), row = static_cast<float>(cell / kpt.width);
        Pose p;
        p.box = kept[i];
        p.keypoints.assign(static_cast<size_t>(keypoints) * 3, 1.0f);
        for (int k = 0; k < keypoints; ++k) {
            float x = (kpt.data[(k * ndim) * hw + cell] + col) * stride;
            float y = (kpt.data[(k * ndim + 1) * hw + cell] + row) * stride;
            p.keypoints[k * 3] = std::min(std::max((x - lb.left) / scale, 0.0f), static_cast<float>(lb.width));
            p.keypoints[k * 3 + 1] = std::min(std::max((y - lb.top) / scale, 0.0f), static_cast<float>(lb.height));
            if (ndim == 3) p.keypoints[k * 3 + 2] = kpt.data[(k * ndim + 2) * hw + cell];
        }
        out.push_back(p);
    }
    return out;
}

}  // namespace workbook

#endif
