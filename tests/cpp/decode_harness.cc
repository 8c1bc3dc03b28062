// Test harness for helpers/deploy/cpp/yolo_detect.h (not shipped): decodes raw outputs dumped by
// tests/test_deploy_detect.py and prints the letterbox geometry and the detections, one per line.
//
//   decode_harness manifest.txt [--end2end]     (--end2end: an end-to-end head's top-k, no NMS)
//   decode_harness --letterbox height width size in.rgb out.rgb   (raw RGB uint8 in, the letterboxed canvas out)
// manifest.txt: "image_height image_width input_size conf iou n_outputs", then per output
// "channels height width dtype zero_point scale file" with dtype f32 (float32) or i8 (int8, dequantized; read by raw_manifest.h).
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "yolo_detect.h"
#include "raw_manifest.h"

int main(int argc, char** argv) {
    if (argc == 7 && std::string(argv[1]) == "--letterbox") {
        int height = atoi(argv[2]), width = atoi(argv[3]), size = atoi(argv[4]);
        std::vector<uint8_t> rgb = read_raw<uint8_t>(argv[5], static_cast<size_t>(height) * width * 3), canvas;
        workbook::letterbox(rgb.data(), height, width, size, canvas);
        std::ofstream(argv[6], std::ios::binary).write(reinterpret_cast<const char*>(canvas.data()), static_cast<std::streamsize>(canvas.size()));
        return 0;
    }
    bool end2end = argc == 3 && std::string(argv[2]) == "--end2end";
    if (argc != 2 && !end2end) {
        fprintf(stderr, "usage: decode_harness manifest.txt [--end2end]\n");
        return 2;
    }
    std::ifstream m(argv[1]);
    int height, width, size;
    float conf, iou;
    size_t n;
    m >> height >> width >> size >> conf >> iou >> n;
    std::vector<workbook::Output> outputs = read_outputs(m, n);
    workbook::Letterbox lb = workbook::letterbox_geometry(height, width, size);
    printf("letterbox %.9f %d %d %d %d\n", lb.scale, lb.left, lb.top, lb.new_width, lb.new_height);
    try {
        std::vector<workbook::Detection> dets = workbook::postprocess(outputs, lb, conf, iou, 300, 30000, end2end);
        for (size_t i = 0; i < dets.size(); ++i)
            printf("det %d %.6f %.4f %.4f %.4f %.4f\n", dets[i].cls, dets[i].score, dets[i].x1, dets[i].y1, dets[i].x2, dets[i].y2);
    } catch (const std::invalid_argument& e) {
        printf("refused %s\n", e.what());
    }
    return 0;
}
