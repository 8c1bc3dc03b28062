// Test harness for helpers/deploy/cpp/yolo_segment.h and yolo_pose.h (not shipped): decodes raw outputs dumped by
// tests/test_deploy_segment_pose.py and prints each instance, one per line.
//
//   instance_harness manifest.txt masks.bin
// manifest.txt: "task image_height image_width input_size conf iou end2end keypoints ndim n_outputs" (task segment or
// pose; end2end 0 or 1; keypoints and ndim for pose, 0 0 for segment), then per output
// "channels height width dtype zero_point scale file" with dtype f32 (float32) or i8 (int8, dequantized; read by raw_manifest.h).
// Prints "det cls score x1 y1 x2 y2 area" per instance (area: mask pixels, segment; 0 for pose), then for pose
// "kpt x y v x y v ..."; segment masks go to masks.bin, n x height x width bytes (0 or 1). A refusal prints "refused ...".
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "yolo_pose.h"
#include "yolo_segment.h"
#include "raw_manifest.h"

static void print_det(const workbook::Detection& d, size_t area) {
    printf("det %d %.6f %.4f %.4f %.4f %.4f %zu\n", d.cls, d.score, d.x1, d.y1, d.x2, d.y2, area);
}

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: instance_harness manifest.txt masks.bin\n");
        return 2;
    }
    std::ifstream m(argv[1]);
    std::string task;
    int height, width, size, end2end, keypoints, ndim;
    float conf, iou;
    size_t n;
    m >> task >> height >> width >> size >> conf >> iou >> end2end >> keypoints >> ndim >> n;
    std::vector<workbook::Output> outputs = read_outputs(m, n);
    workbook::Letterbox lb = workbook::letterbox_geometry(height, width, size);
    try {
        if (task == "segment") {
            std::vector<workbook::Instance> found = workbook::postprocess_segment(outputs, lb, conf, iou, 300, 30000, end2end != 0);
            std::ofstream masks(argv[2], std::ios::binary);
            for (size_t i = 0; i < found.size(); ++i) {
                print_det(found[i].box, found[i].area);
                masks.write(reinterpret_cast<const char*>(found[i].mask.data()), static_cast<std::streamsize>(found[i].mask.size()));
            }
        } else {
            std::vector<workbook::Pose> found = workbook::postprocess_pose(outputs, lb, keypoints, ndim, conf, iou, 300, 30000,
                                                                           end2end != 0);
            for (size_t i = 0; i < found.size(); ++i) {
                print_det(found[i].box, 0);
                printf("kpt");
                for (size_t k = 0; k < found[i].keypoints.size(); ++k) printf(" %.5f", found[i].keypoints[k]);
                printf("\n");
            }
        }
    } catch (const std::invalid_argument& e) {
        printf("refused %s\n", e.what());
    }
    return 0;
}
