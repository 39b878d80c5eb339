# SPDX-License-Identifier: MIT
# The soak's samples (bench/chaos/soak.sh): gnuplot -e "csv='soak.csv'; out='soak.svg';
# title='...'" bench/chaos/soak.gp. Left: the edge's RSS (MiB); right: its open fds, client
# connections and open transactions.
set terminal svg size 900,420 dynamic font "sans,11"
set output out
set datafile separator ","
set key autotitle columnhead outside bottom center horizontal
set title title
set xlabel "seconds into the measured run"
set ylabel "RSS (MiB)"
set y2label "count"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set grid
plot csv using 1:($2/1024) with lines lw 2 title "RSS (MiB)", \
     csv using 1:3 axes x1y2 with lines title "fds", \
     csv using 1:4 axes x1y2 with lines title "client connections", \
     csv using 1:5 axes x1y2 with lines title "open transactions"
